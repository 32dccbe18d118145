"""Twilio webhooks: verify the signature, advance the flow one step, answer with TwiML.

Every route here answers a caller. Whatever goes wrong inside, the answer is valid
TwiML carrying the safety essentials: never a 5xx, never Twilio's "application error".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from urllib.parse import quote_plus

from flask import Blueprint, Request, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from helpline.application.composition import Components
from helpline.application.intake import Caller, open_answers, seal_answers
from helpline.application.messaging import Incoming
from helpline.conversation import twiml
from helpline.conversation.channels import VOICE
from helpline.conversation.engine import Event, Reply, State
from helpline.infrastructure.constants import MAX_INPUT_CHARS, STATS_KEY
from helpline.infrastructure.metrics import FAILSAFE_ANSWERS, REJECTED_SIGNATURES
from helpline.reports import tally
from helpline.web.monitoring import route
from helpline.web.services import helpline

log = logging.getLogger(__name__)
bp = Blueprint("twilio", __name__, url_prefix="/twilio")
# Where a call's next step is posted; its query string carries the position.
VOICE_STEP = "/voice/step"

TWIML = "text/xml"
# Status values Twilio sends; anything else is counted as "other" so input cannot
# create unbounded Redis fields.
CALL_STATUSES = frozenset(
    {
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
    }
)
MESSAGE_STATUSES = frozenset(
    {
        "accepted",
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "receiving",
        "received",
        "read",
        "canceled",
        "partially_delivered",
    }
)


def _twiml(body: str) -> Response:
    return Response(body, status=200, mimetype=TWIML)


def _field(form: Mapping[str, str], name: str) -> str:
    return form.get(name, "")[:MAX_INPUT_CHARS]


def _form(name: str) -> str:
    return _field(request.form, name)


def signed_url(services: Components, req: Request) -> str:
    """The URL Twilio signed: PUBLIC_URL (else the request's own root), path and query.

    The query is taken as sent: request.url decodes %-escapes (%7B, %2F, UTF-8...), and
    a URL that differs from the signed one by a single character never validates.
    """
    # Scheme and host as they arrived (after ProxyFix): request.root_url would also
    # rewrite them as an IRI, which costs more and is not what Twilio signed.
    base = services.settings.public_url or f"{req.scheme}://{req.host}{req.script_root}"
    query = req.query_string.decode("latin-1")
    return base + req.path + (f"?{query}" if query else "")


def _language_hint() -> str:
    services = helpline()
    lang = request.args.get("lang", "")
    return lang if lang in services.library.content.languages else services.default_language


def failsafe_response() -> Response:
    services = helpline()
    FAILSAFE_ANSWERS.labels(route()).inc()
    # Counted in memory, sent with a later write: the fail-safe may have no Redis at all.
    with contextlib.suppress(RuntimeError):  # no thread for the flush: the answer matters
        services.reports.add(tally.FAILSAFE + "error")
    lang = _language_hint()
    if request.path.startswith("/twilio/sms"):
        return _twiml(services.sms_failsafe[lang])
    return _twiml(services.voice_failsafe[lang])


@bp.before_request
def require_twilio_signature() -> Response | None:
    # The request and services are looked up once: each lookup through Flask's proxies
    # costs about as much as a line of work, and a webhook makes dozens.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    services = helpline()
    signature = req.headers.get("X-Twilio-Signature", "")
    form = req.form
    if signature and None in form:
        # A multipart field whose name could not be read: nothing Twilio sends, nor signs.
        log.warning("rejected webhook with a nameless form field", extra={"path": req.path})
        return Response("Bad Request: a form field has no name\n", 400, mimetype="text/plain")
    if signature and services.validator.validate(signed_url(services, req), form, signature):
        return None
    REJECTED_SIGNATURES.labels(route()).inc()
    log.warning("rejected webhook without a valid signature", extra={"path": req.path})
    return Response(
        "Forbidden: missing or invalid X-Twilio-Signature\n", 403, mimetype="text/plain"
    )


@bp.errorhandler(Exception)
def answer_safely(exc: Exception) -> Response | HTTPException:
    """Turn any failure inside a webhook into the fail-safe TwiML."""
    if isinstance(exc, HTTPException) and not isinstance(exc, RequestEntityTooLarge):
        if exc.code is not None and exc.code < 500:
            return exc
    # The exception text can hold input; the type and the stack are enough to debug.
    log.error(
        "webhook failed; answered with the fail-safe",
        extra={"path": request.path, "error": type(exc).__name__},
        exc_info=not isinstance(exc, HTTPException),
    )
    return failsafe_response()


# -- voice ------------------------------------------------------------------------------


def _voice_answer(
    services: Components, state: State, events: list[Event], call_sid: str = ""
) -> Response:
    # Built by hand: url_for costs as much as the rest of this answer, and urlencode a
    # good part of it. Node ids and language codes are the flows' own (lint allows only
    # letters, digits and _), so only the sealed answers need quoting.
    query = f"node={state.node}&lang={state.lang}&r={state.reprompts}"
    if state.answers:
        # Answers can hold a callback number: sealed, and bound to this call.
        query += "&a=" + quote_plus(seal_answers(services.sealer, state.answers, call_sid))
    action = f"{request.script_root}{bp.url_prefix}{VOICE_STEP}?{query}"
    return _twiml(twiml.voice(events, action, services.settings.region))


@bp.post("/voice")
def voice_incoming() -> Response:
    services = helpline()
    if not services.limits.call_allowed(_form("From")):
        # Over the hour's calls: the safety essentials, and nothing else.
        return _twiml(services.voice_failsafe[services.default_language])
    state, events = services.voice.start()
    log.debug("call answered", extra={"node": state.node})
    return _voice_answer(services, state, events)


@bp.post(VOICE_STEP)
def voice_step() -> Response:
    services = helpline()
    engine = services.voice
    form, args = request.form, request.args
    caller = Caller(number=_field(form, "From"), channel=VOICE, webhook_sid=_field(form, "CallSid"))
    state = engine.restore(
        {
            "flow": engine.flow.id,
            "node": args.get("node", ""),
            "lang": args.get("lang", ""),
            "reprompts": args.get("r", "0"),
            "answers": open_answers(services.sealer, args.get("a", ""), caller.webhook_sid),
        }
    )
    if state is None:
        # An action URL from an older deployment (or a tampered one): start over, safely.
        state, events = engine.start(args.get("lang"))
    else:
        reply = Reply(digits=_field(form, "Digits"), text=_field(form, "SpeechResult"))
        danger = engine.danger(reply.text) if reply.text else None
        if danger is not None:
            services.desk.escalate(caller)
        facts = services.checkins.facts(services.desk.facts(caller, spoken=True))
        step = engine.resume(state, reply, context=facts, danger=danger)
        before = state.node
        state, events = services.actions.settle(engine, caller, step, facts)
        # No Redis here: these counts go with the process's next write (tally.Pending).
        if danger is not None:
            services.reports.add(tally.crisis(VOICE.name))
        chosen = engine.topic(before, state.node)
        if chosen:
            services.reports.add(tally.topic(chosen))
    log.debug("call step", extra={"node": state.node, "lang": state.lang})
    return _voice_answer(services, state, events, caller.webhook_sid)


@bp.post("/voice/fallback")
def voice_fallback() -> Response:
    log.error("voice fallback used", extra={"error_code": _form("ErrorCode")[:10]})
    return failsafe_response()


# -- sms --------------------------------------------------------------------------------


@bp.post("/sms")
def sms_incoming() -> Response:
    text = Incoming(sender=_form("From"), body=_form("Body"), message_sid=_form("MessageSid"))
    return _twiml(helpline().texts.answer(text))


@bp.post("/sms/fallback")
def sms_fallback() -> Response:
    log.error("sms fallback used", extra={"error_code": _form("ErrorCode")[:10]})
    return failsafe_response()


# -- status callbacks -------------------------------------------------------------------


def _count(channel: str, status: str, known: frozenset[str]) -> Response:
    field = status if status in known else "other"
    reports = helpline().reports

    def write(client) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(f"{STATS_KEY}:{channel}", field, 1)
        reports.drain(pipe)  # counts a call's steps left waiting for a write
        pipe.execute()

    helpline().store.attempt(f"{channel} status", write, None)
    return _twiml(twiml.empty_messaging())


@bp.post("/voice/status")
def voice_status() -> Response:
    return _count("voice", _form("CallStatus"), CALL_STATUSES)


@bp.post("/sms/status")
def sms_status() -> Response:
    return _count("sms", _form("MessageStatus") or _form("SmsStatus"), MESSAGE_STATUSES)
