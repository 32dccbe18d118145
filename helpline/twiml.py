"""Turn engine events into TwiML, and build the fail-safe answers."""

from __future__ import annotations

from collections.abc import Sequence

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from helpline.config import Region
from helpline.constants import GATHER_TIMEOUT
from helpline.flows.engine import Ask, Event, Hangup, Say
from helpline.flows.gsm import fold_to_gsm
from helpline.flows.lint import sms_text

# Twilio ignores hints past a few hundred phrases; ours stay far below this.
MAX_HINTS = 100


def voice(events: Sequence[Event], action_url: str, region: Region) -> str:
    """Render one voice step: says inside a Gather (so callers can barge in), or a hangup."""
    response = VoiceResponse()
    ask = next((e for e in events if isinstance(e, Ask)), None)
    target = response
    if ask is not None:
        target = response.gather(
            input="dtmf speech",
            action=action_url,
            method="POST",
            num_digits=ask.max_digits,
            timeout=GATHER_TIMEOUT,
            speech_timeout="auto",
            hints=", ".join(ask.hints[:MAX_HINTS]) or None,
            language=region.voice_language[ask.lang],
            action_on_empty_result=True,
        )
    for event in events:
        if isinstance(event, Say):
            target.say(event.text, language=region.voice_language[event.lang])
    if any(isinstance(e, Hangup) for e in events):
        response.hangup()
    return str(response.to_xml())


def sms(events: Sequence[Event], gsm: bool) -> str:
    """Render one SMS step as a single reply message (or none, if it says nothing)."""
    response = MessagingResponse()
    text = sms_text(events, gsm)
    if text:
        response.message(text)
    return str(response.to_xml())


def empty_messaging() -> str:
    return str(MessagingResponse().to_xml())


def voice_failsafe(text: str, locale: str) -> str:
    """The answer when anything fails: the safety essentials, then a kind goodbye."""
    response = VoiceResponse()
    response.say(text, language=locale)
    response.hangup()
    return str(response.to_xml())


def sms_failsafe(text: str) -> str:
    response = MessagingResponse()
    response.message(text)
    return str(response.to_xml())


def sms_text_for(text: str, gsm: bool) -> str:
    """Prepare one message for sending (GSM-7 folding in GSM languages)."""
    return fold_to_gsm(text) if gsm else text
