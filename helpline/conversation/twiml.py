"""Turn engine events into TwiML, and build the fail-safe answers."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from xml.sax.saxutils import escape as xml_escape

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from helpline.conversation.engine import Ask, Event, Hangup, Say
from helpline.conversation.lint import sms_text
from helpline.conversation.model import Medium
from helpline.conversation.regions import Region
from helpline.infrastructure.constants import GATHER_TIMEOUT, NUMBER_TIMEOUT

# Twilio ignores hints past a few hundred phrases; ours stay far below this.
MAX_HINTS = 100
# Distinct rendered answers kept; far more than the flows can produce.
RENDER_CACHE_SIZE = 1024


def reply(region: Region, medium: Medium, events: Sequence[Event], gsm: bool) -> str:
    """Render one reply as a webhook would (voice with a placeholder action URL)."""
    if medium is Medium.VOICE:
        return voice(events, "/twilio/voice/step", region)
    return sms(events, gsm)


def voice(events: Sequence[Event], action_url: str, region: Region) -> str:
    """Render one voice step: says inside a Gather (so callers can barge in), or a hangup."""
    locales = tuple(region.voice_locales.items())
    if any(isinstance(event, Say) and event.personal for event in events):
        return _render_voice(events, action_url, dict(locales))  # never kept
    rendered = _voice_cached(tuple(events), locales)
    return rendered.replace(_ACTION_MARK, xml_escape(action_url, {'"': "&quot;"}))


# Stands for the action URL in a cached answer: each call's URL carries its own sealed
# state, so it is put in after the cache, and the cache holds nothing about a caller.
_ACTION_MARK = "/twilio/voice/step?action-goes-here"


# Cached events come from the flows' content with no fact about the caller in them
# (Say.personal), so the distinct answers are bounded by nodes x languages x reprompts;
# rendering each once saves the XML work (about 150 us) on every webhook.
@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _voice_cached(events: tuple[Event, ...], locales: tuple[tuple[str, str], ...]) -> str:
    return _render_voice(events, _ACTION_MARK, dict(locales))


def _render_voice(events: Sequence[Event], action_url: str, locale: dict[str, str]) -> str:
    response = VoiceResponse()
    ask = next((e for e in events if isinstance(e, Ask)), None)
    target = response
    if ask is not None:
        # A phone number is keyed in full and ended with #; menu choices end by count.
        target = response.gather(
            input="dtmf speech",
            action=action_url,
            method="POST",
            num_digits=None if ask.collect else ask.max_digits,
            finish_on_key="#" if ask.collect else None,
            timeout=NUMBER_TIMEOUT if ask.collect else GATHER_TIMEOUT,
            speech_timeout="auto",
            hints=", ".join(ask.hints[:MAX_HINTS]) or None,
            language=locale[ask.lang],
            action_on_empty_result=True,
        )
    for event in events:
        if isinstance(event, Say):
            target.say(event.text, language=locale[event.lang])
    if any(isinstance(e, Hangup) for e in events):
        response.hangup()
    return str(response.to_xml())


def sms(events: Sequence[Event], gsm: bool, max_chars: int | None = None) -> str:
    """Render one text step as its reply (or none, if it says nothing): one message,
    or on a channel that limits a message's characters, as many as it takes."""
    if any(isinstance(event, Say) and event.personal for event in events):
        return _render_sms(events, gsm, max_chars)  # never kept
    return _sms_cached(tuple(events), gsm, max_chars)


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _sms_cached(events: tuple[Event, ...], gsm: bool, max_chars: int | None) -> str:
    return _render_sms(events, gsm, max_chars)


def _render_sms(events: Sequence[Event], gsm: bool, max_chars: int | None) -> str:
    response = MessagingResponse()
    text = sms_text(events, gsm)
    for part in split_message(text, max_chars):
        response.message(part)
    return str(response.to_xml())


def split_message(text: str, max_chars: int | None) -> list[str]:
    """The text as the messages it goes out in, each at most max_chars (None: any length);
    cut at a line break, else a space, where one is near."""
    if not text:
        return []
    if max_chars is None or len(text) <= max_chars:
        return [text]
    parts, rest = [], text
    while len(rest) > max_chars:
        cut = rest.rfind("\n", 0, max_chars + 1)
        if cut <= 0:
            cut = rest.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [*parts, rest] if rest else parts


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
