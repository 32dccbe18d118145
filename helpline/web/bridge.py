"""Bridged callbacks: Twilio calls the counsellor's own phone, then dials the caller.

The counsellor answers a call from the helpline's number and is asked to press 1: only
a person who presses it is connected, never a voicemail that picked up. Then the caller
is dialled with the helpline's number as caller ID, so neither side sees the other's
number. The URL Twilio is given carries a short-lived sealed token naming the request
(or the escalated check-in) and the counsellor, never a phone number.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Response, request
from twilio.twiml.voice_response import Gather, VoiceResponse
from werkzeug.exceptions import HTTPException

from helpline.application.config import Settings
from helpline.callbacks.queue import Status
from helpline.infrastructure.constants import BRIDGE_DIAL_TIMEOUT, BRIDGE_TOKEN_SECONDS
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import SealError
from helpline.web.services import helpline
from helpline.web.webhooks import CALL_STATUSES, require_twilio_signature

log = logging.getLogger(__name__)
bp = Blueprint("bridge", __name__, url_prefix="/twilio/bridge")
bp.before_request(require_twilio_signature)

TWIML = "text/xml"
# What the counsellor hears (flows/content, in the default language): on answering, and
# when the link is stale, the call has ended, or it could not be connected.
GREETING = "bridge.greeting"
NOT_ACCEPTED = "bridge.not_accepted"
NOT_YOURS = "bridge.not_yours"
ENDED = "bridge.ended"
FAILED = "bridge.failed"
# The request-hash fields the console reads to show how a bridged call is going: the
# counsellor's leg, and the caller's (kept apart, so neither hides the other).
CALL_FIELD = "bridge_call"
STATUS_FIELD = "bridge_status"
CALLER_FIELD = "bridge_caller"
# Seconds the counsellor has to press 1 before the call ends unconnected.
ACCEPT_SECONDS = 10
_TOKEN_RECORD = "bridge"
# What a bridge connects a counsellor to: a call back request, or an escalated check-in.
REQUEST, CHECKIN = "request", "checkin"


def make_token(
    sealer: Sealer, rid: str, counsellor: str, now: float | None = None, kind: str = REQUEST
) -> str:
    """Return a sealed, expiring token for one request (or check-in) and counsellor."""
    expires = (now if now is not None else time.time()) + BRIDGE_TOKEN_SECONDS
    values = {"r": rid, "c": counsellor, "x": expires, **({"k": kind} if kind != REQUEST else {})}
    return sealer.seal(json.dumps(values), _TOKEN_RECORD)


def read_token(sealer: Sealer, token: str, now: float | None = None) -> tuple[str, str, str] | None:
    """Return (id, counsellor, kind) from a token, or None if altered or expired."""
    try:
        values = json.loads(sealer.open(token, _TOKEN_RECORD))
    except (SealError, ValueError):
        return None
    if float(values["x"]) < (now if now is not None else time.time()):
        return None
    return str(values["r"]), str(values["c"]), str(values.get("k", REQUEST))


def public_base(settings: Settings) -> str:
    """Return the base URL Twilio reaches this service at."""
    return settings.public_url or f"http://localhost:{settings.port}"


def answer_url(settings: Settings, token: str) -> str:
    return f"{public_base(settings)}{bp.url_prefix}/{token}/answer"


def status_url(settings: Settings, token: str) -> str:
    return f"{public_base(settings)}{bp.url_prefix}/{token}/status"


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response.to_xml()), 200, mimetype=TWIML)


def _say(response: VoiceResponse | Gather, key: str) -> None:
    services = helpline()
    lang = services.default_language
    region = services.settings.region
    text = services.library.content.text(key, lang, region.variables(lang, spoken=True))
    response.say(text, language=region.voice_locales[lang])


def _goodbye(key: str) -> Response:
    response = VoiceResponse()
    _say(response, key)
    response.hangup()
    return _twiml(response)


@bp.post("/<token>/answer")
def answer(token: str) -> Response:
    """The counsellor's phone was answered: ask them to press 1 to reach the caller."""
    services = helpline()
    if _claim(token) is None:
        return _goodbye(NOT_YOURS)
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        num_digits=1,
        timeout=ACCEPT_SECONDS,
        action=f"{public_base(services.settings)}{bp.url_prefix}/{token}/accept",
        action_on_empty_result=True,
    )
    _say(gather, GREETING)
    _say(response, NOT_ACCEPTED)  # only if Twilio could not post the (empty) result
    response.hangup()
    return _twiml(response)


@bp.post("/<token>/accept")
def accept(token: str) -> Response:
    """The counsellor pressed 1: dial the caller. Anything else (a voicemail) ends it."""
    services = helpline()
    found = _claim(token)
    if found is None:
        return _goodbye(NOT_YOURS)
    rid, counsellor, kind, phone = found
    if request.form.get("Digits", "") != "1":
        annotate(kind, rid, **{STATUS_FIELD: "not accepted: the caller was not called"})
        log.info("bridge not accepted", extra={"request": rid})
        return _goodbye(NOT_ACCEPTED)
    settings = services.settings
    response = VoiceResponse()
    dial = response.dial(
        caller_id=settings.phone_number,
        timeout=BRIDGE_DIAL_TIMEOUT,
        action=f"{public_base(settings)}{bp.url_prefix}/{token}/dialled",
    )
    dial.number(phone)
    annotate(kind, rid, **{STATUS_FIELD: "connecting", CALLER_FIELD: "being dialled"})
    log.info("bridging a callback", extra={"request": rid, "counsellor": counsellor})
    return _twiml(response)


def _claim(token: str) -> tuple[str, str, str, str] | None:
    """The request (or check-in), counsellor, kind and number to dial a live token names,
    while the counsellor still holds it."""
    services = helpline()
    found = read_token(services.sealer, token)
    if found is None:
        log.info("bridge link stale or altered")
        return None
    rid, counsellor, kind = found
    if kind == CHECKIN:
        phone = services.checkins.bridge_phone(rid, counsellor)
    else:
        claim = services.queue.get(rid)
        mine = claim is not None and claim.status is Status.CLAIMED
        mine = mine and claim is not None and claim.claimed_by == counsellor
        phone = services.queue.phone(rid) if mine else None
    if phone is None:
        log.info("bridge for a request no longer theirs", extra={"request": rid})
        return None
    return rid, counsellor, kind, phone


@bp.post("/<token>/dialled")
def dialled(token: str) -> Response:
    """The caller's leg ended: note how, and send the counsellor back to the console."""
    found = read_token(helpline().sealer, token, now=0.0)  # the call may outlast the link
    if found is not None:
        status = request.form.get("DialCallStatus", "")
        annotate(found[2], found[0], **{CALLER_FIELD: _known(status)})
    return _goodbye(ENDED)


@bp.post("/<token>/status")
def status(token: str) -> Response:
    """Status changes of the call to the counsellor's phone."""
    services = helpline()
    found = read_token(services.sealer, token, now=0.0)
    if found is not None:
        rid, counsellor, kind = found
        state = _known(request.form.get("CallStatus", ""))
        annotate(kind, rid, **{STATUS_FIELD: f"your phone {state}"})
        services.live_calls.changed(counsellor, rid, state)
    return Response("", 204)


def annotate(kind: str, rid: str, **fields: str) -> None:
    """Note how a bridged call goes on the request, or the check-in, it is for."""
    services = helpline()
    if kind == CHECKIN:
        services.checkin_sessions.annotate(rid, **fields)
    else:
        services.queue.annotate(rid, **fields)


def _known(status: str) -> str:
    """Return a Twilio call status as sent if it is one we know, else 'other'."""
    return status if status in CALL_STATUSES else "other"


@bp.errorhandler(Exception)
def answer_safely(exc: Exception) -> Response | HTTPException:
    """Whatever fails, the counsellor hears a plain sentence, not Twilio's error."""
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        return exc
    log.error(
        "bridge webhook failed; answered with the fail-safe",
        extra={"path_kind": request.endpoint or "", "error": type(exc).__name__},
        exc_info=not isinstance(exc, HTTPException),
    )
    return _goodbye(FAILED)
