"""The check-in call: the TwiML Twilio fetches when it rings the caller, and its status.

The worker places the call (workers.checkins) with URLs carrying a sealed token that
names the session and the attempt, never a phone number. A person who answers hears
"press 1 if you're OK, 2 for 5 more minutes"; a machine, no key, or a call that ends
unanswered counts as a missed attempt (helpline.application.checkin decides what next).
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException

from helpline.application.config import Settings
from helpline.checkins.sessions import Session
from helpline.infrastructure.constants import GATHER_TIMEOUT
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import SealError
from helpline.web.bridge import public_base
from helpline.web.services import helpline
from helpline.web.webhooks import require_twilio_signature

log = logging.getLogger(__name__)
bp = Blueprint("checkin", __name__, url_prefix="/twilio/checkin")
bp.before_request(require_twilio_signature)

TWIML = "text/xml"
_TOKEN_RECORD = "checkin-call"
# What the caller hears on the check-in call (the last, once no more time can be given),
# and after each answer.
CALL = "voice.checkin_call"
LAST_CALL = "voice.checkin_call_last"
SAID = {
    "ok": "voice.checkin_ok",
    "more": "voice.checkin_more",
    "spent": "voice.checkin_no_more",
    "missed": "voice.checkin_missed",
}


def make_token(sealer: Sealer, session: str, attempt: int) -> str:
    """Return a sealed token naming one call attempt of one session."""
    return sealer.seal(json.dumps({"s": session, "n": attempt}), _TOKEN_RECORD)


def read_token(sealer: Sealer, token: str) -> tuple[str, int] | None:
    try:
        values = json.loads(sealer.open(token, _TOKEN_RECORD))
        return str(values["s"]), int(values["n"])
    except (SealError, ValueError, KeyError, TypeError):
        return None


def _url(settings: Settings, token: str, step: str) -> str:
    return f"{public_base(settings)}{bp.url_prefix}/{token}/{step}"


def answer_url(settings: Settings, token: str) -> str:
    return _url(settings, token, "answer")


def status_url(settings: Settings, token: str) -> str:
    return _url(settings, token, "status")


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response.to_xml()), 200, mimetype=TWIML)


def _spoken(lang: str) -> str:
    """The session's language if calls speak it, else the default."""
    services = helpline()
    return lang if lang in services.settings.region.voice_locales else services.default_language


def _say(response: VoiceResponse, key: str, lang: str) -> None:
    services = helpline()
    region = services.settings.region
    lang = _spoken(lang)
    text = services.library.content.text(key, lang, region.variables(lang, spoken=True))
    response.say(text, language=region.voice_locales[lang])


def _hang_up() -> Response:
    response = VoiceResponse()
    response.hangup()
    return _twiml(response)


def _goodbye(key: str, lang: str) -> Response:
    response = VoiceResponse()
    _say(response, key, lang)
    response.hangup()
    return _twiml(response)


def _found(token: str) -> tuple[str, int, Session] | None:
    services = helpline()
    found = read_token(services.sealer, token)
    if found is None:
        return None
    session = services.checkins.session(found[0])
    return (found[0], found[1], session) if session is not None else None


@bp.post("/<token>/answer")
def answer(token: str) -> Response:
    """The call was picked up: ask a person how they are; a machine is a missed call."""
    services = helpline()
    found = _found(token)
    if found is None:
        return _hang_up()
    sid, attempt, session = found
    lang = session.lang
    if not services.checkins.answered(sid, attempt, request.form.get("AnsweredBy", "")):
        return _hang_up()
    settings = services.settings
    content = services.library.content
    # Once the time is spent, "press 2 for more" is not offered: it could only be refused.
    more = services.checkins.may_put_off(session)
    hints = [*content.phrases("checkin_said_ok", lang)]
    if more:
        hints += content.phrases("checkin_more_time", lang)
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf speech",
        num_digits=1,
        timeout=GATHER_TIMEOUT,
        action=_url(settings, token, "input"),
        language=settings.region.voice_locales.get(lang, "en-GB"),
        hints=", ".join(hints),
    )
    _say(gather, CALL if more else LAST_CALL, lang)
    _say(gather, CALL if more else LAST_CALL, lang)  # once more, for someone slow to the phone
    response.redirect(_url(settings, token, "input"))  # no key at all: that is an answer too
    return _twiml(response)


@bp.post("/<token>/input")
def input_(token: str) -> Response:
    """What the caller keyed or said (or nothing)."""
    services = helpline()
    found = _found(token)
    if found is None:
        return _hang_up()
    sid, attempt, session = found
    lang = session.lang
    digits = request.form.get("Digits", "")[:2]
    speech = request.form.get("SpeechResult", "")[:200]
    danger = services.voice.danger(speech) if speech else None
    if danger is not None:
        # Danger first, even in "I'm OK, but he's not breathing": the emergency answer,
        # and the counsellors alerted now.
        services.checkins.danger_said(sid, attempt)
        response = VoiceResponse()
        for say in services.voice.danger_reply(danger, _spoken(lang)):
            response.say(say.text, language=services.settings.region.voice_locales[say.lang])
        response.hangup()
        return _twiml(response)
    result = services.checkins.reply(sid, attempt, digits, speech)
    return _goodbye(SAID.get(result, SAID["missed"]), lang)


@bp.post("/<token>/status")
def status(token: str) -> Response:
    """How the call ended: unanswered, busy, failed, or completed without a key."""
    services = helpline()
    found = read_token(services.sealer, token)
    if found is not None:
        services.checkins.call_status(found[0], found[1], request.form.get("CallStatus", ""))
    return Response("", 204)


@bp.errorhandler(Exception)
def answer_safely(exc: Exception) -> Response | HTTPException:
    """Whatever fails, the caller hears the safety essentials, not Twilio's error."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc
    log.error(
        "check-in webhook failed; answered with the fail-safe",
        extra={"path_kind": request.endpoint or "", "error": type(exc).__name__},
        exc_info=not isinstance(exc, HTTPException),
    )
    services = helpline()
    return Response(services.voice_failsafe[services.default_language], 200, mimetype=TWIML)
