"""RQ jobs: every outbound text and call, and the queue's housekeeping.

They are queued through helpline.application.jobs, which names each one by its path here. Jobs take
request ids and plain values, never phone numbers: a job's arguments are stored in
Redis and shown by RQ's tools. Each send records Twilio's SID on the request
before the job counts as done, and a retry first checks whether an earlier attempt got
through, so a crash or a kill mid-send never texts anyone twice.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from helpline.application.composition import Components
from helpline.application.config import load_settings
from helpline.application.messaging import optout_key, window_key
from helpline.callbacks import retention
from helpline.callbacks.queue import OPEN_STATUSES, UNCONFIRMED, Request
from helpline.conversation.channels import SMS, Channel, channel_named
from helpline.conversation.gsm import as_sent
from helpline.infrastructure.errors import Failure, OutboundError
from helpline.infrastructure.metrics import TEXTS
from helpline.infrastructure.outbound import find_sent, make_client, send_template, send_text
from helpline.infrastructure.records import SendRecord
from workers.connection import connect

log = logging.getLogger(__name__)

# A confirmation not sent this long after queueing is picked up by housekeeping.
CONFIRM_GRACE_SECONDS = 60
# Why a text was not sent to a WhatsApp user whose last message is over 24 hours old.
OUTSIDE_WINDOW = "unsent:outside-whatsapp-window"
# The kind of text (see send_once) that asks a reached caller how much the call helped.
SURVEY = "survey"


# -- the worker's resources, built once per process ----------------------------------------


class Context(Components):
    """A worker process's services: the helpline's Components, and the Twilio client."""

    @functools.cached_property
    def twilio(self) -> Any:
        """Twilio's REST client, or the local outbox in development without an account."""
        if self.settings.outbox == "local":
            return self.local_outbox
        return make_client(self.settings)

    def warm(self) -> None:
        """Load what the first job would otherwise load (flows, the client's API modules)."""
        self.library  # noqa: B018  (each is loaded on first use)
        self.twilio.messages  # noqa: B018
        self.twilio.calls  # noqa: B018

    def text(self, key: str, lang: str, channel: Channel = SMS, **values: str) -> str:
        """A message as it goes out on the channel, in the caller's language."""
        content = self.library.content
        variables = {**self.settings.region.variables(lang), **values}
        gsm = channel.gsm(content.languages[lang].gsm)
        return as_sent(content.text(key, lang, variables), gsm)


@functools.cache
def context() -> Context:
    """Return this process's resources, read from the environment like every process."""
    settings = load_settings()
    return Context(settings, connect(settings))


# -- sending exactly once ------------------------------------------------------------------


class SendRecords(Protocol):
    """Where the texts about a record are kept: a call back request, a check-in session."""

    def send_record(self, rid: str, kind: str) -> SendRecord: ...

    def sending(self, rid: str, kind: str, text: str, at: float) -> bool: ...

    def settle_send(self, rid: str, kind: str, result: str) -> bool: ...


def send_once(
    ctx: Context,
    request_id: str,
    kind: str,
    to: str,
    body: str,
    who: str,
    channel: Channel = SMS,
    records: SendRecords | None = None,
) -> str | None:
    """Text the number `to` on a channel once per (request, kind); return the SID, or
    None if it cannot be sent.

    Before sending, a marker records the attempt and its text. If a marker is found
    without a SID, an earlier attempt died mid-send: Twilio's message log says whether
    it went. The text of the first attempt is the one looked for and sent: a queue
    position may have changed since, and a new text would not match the one that went.
    records: where the marker is kept (default: the call back request's).
    """
    kept: SendRecords = records if records is not None else ctx.queue
    record = kept.send_record(request_id, kind)
    if record.result:
        return record.result
    sender, address = ctx.settings.sender(channel), channel.address(to)
    if record.started is not None:
        body = record.text or body
        sid = find_sent(ctx.twilio, sender=sender, to=address, body=body, since=record.started)
        if sid:
            kept.settle_send(request_id, kind, sid)
            return sid
    template = None
    if channel.window_seconds and not ctx.client.exists(window_key(channel, who)):
        # WhatsApp delivers only approved templates this long after their last message.
        template = ctx.settings.whatsapp_template_sid
        if template is None:
            _counted(kind, channel, "unsent", "outside-whatsapp-window")
            kept.settle_send(request_id, kind, OUTSIDE_WINDOW)
            log.warning(
                "not sent: outside WhatsApp's 24-hour window and no template is configured",
                extra={"request": request_id, "kind": kind},
            )
            return None
    kept.sending(request_id, kind, body, time.time())
    try:
        if template:
            sid = send_template(
                ctx.twilio, sender=sender, to=address, content_sid=template, variables={"1": body}
            )
        else:
            sid = send_text(ctx.twilio, sender=sender, to=address, body=body)
    except OutboundError as exc:
        _counted(kind, channel, exc.kind.value, str(exc.code or exc.status or "network"))
        if exc.kind is Failure.OPTED_OUT:
            ctx.client.sadd(optout_key(channel), who)
            kept.settle_send(request_id, kind, "opted-out")
            log.info("not texted: the recipient has opted out", extra={"request": request_id})
            return None
        if exc.kind is Failure.PERMANENT:
            kept.settle_send(request_id, kind, f"failed:{exc.code or exc.status}")
            log.error(
                "text refused by Twilio",
                extra={"request": request_id, "kind": kind, "code": exc.code},
            )
            return None
        raise  # worth retrying: RQ does, with backoff
    kept.settle_send(request_id, kind, sid)
    _counted(kind, channel, "sent")
    log.info("text sent", extra={"request": request_id, "kind": kind, "channel": channel.name})
    return sid


def _counted(kind: str, channel: Channel, result: str, reason: str = "") -> None:
    """Count a text's outcome: its kind without the attempt or counsellor after the colon."""
    TEXTS.labels(kind.partition(":")[0], channel.name, result, reason).inc()


@dataclass(frozen=True)
class Recipient:
    """A caller who may be texted about their request now, and how."""

    request: Request
    number: str
    who: str  # keyed hash of the number: what opt-outs and windows are kept by
    channel: Channel


def _recipient(ctx: Context, request_id: str) -> Recipient | None:
    """Return the request's caller if they may be texted now."""
    request = ctx.queue.get(request_id)
    if request is None:
        return None
    who = ctx.queue.recipient(request_id)
    if not request.texts_ok or who is None:
        return None
    channel = channel_named(request.texts_by)
    if ctx.client.sismember(optout_key(channel), who):
        log.info("not texted: opted out", extra={"request": request_id, "channel": channel.name})
        return None
    return Recipient(request, ctx.queue.phone(request_id), who, channel)


def _text_caller(ctx: Context, to: Recipient, kind: str, key: str, **values: str) -> str | None:
    body = ctx.text(key, to.request.lang, to.channel, **values)
    return send_once(ctx, to.request.id, kind, to.number, body, to.who, to.channel)


# -- jobs ----------------------------------------------------------------------------------


def confirm_request(request_id: str) -> str | None:
    """Text a caller that their request is queued, with their place."""
    ctx = context()
    try:
        to = _recipient(ctx, request_id)
        if to is None or to.request.status not in OPEN_STATUSES:
            return None
        position = ctx.queue.position(request_id)
        if position:
            return _text_caller(ctx, to, "confirm", "sms.confirm_queued", position=str(position))
        return _text_caller(ctx, to, "confirm", "sms.confirm_soon")
    finally:
        ctx.client.zrem(UNCONFIRMED, request_id)


def alert_counsellors(request_id: str) -> int:
    """Text every on-duty counsellor that an urgent request is waiting; return how many."""
    ctx = context()
    request = ctx.queue.get(request_id)
    if request is None or request.status not in OPEN_STATUSES:
        return 0
    lang = ctx.library.content.default_language
    body = ctx.text("sms.counsellor_alert", lang)
    sent = 0
    for counsellor in ctx.counsellors.on_duty():
        phone = ctx.counsellors.phone(counsellor.username)
        who = f"counsellor:{counsellor.username}"
        if send_once(ctx, request_id, f"alert:{counsellor.username}", phone, body, who):
            sent += 1
    return sent


def missed_call_text(request_id: str, attempt: int) -> str | None:
    """Tell a caller we tried and will try again (when texts are welcome)."""
    ctx = context()
    to = _recipient(ctx, request_id)
    return None if to is None else _text_caller(ctx, to, f"missed:{attempt}", "sms.missed_call")


def expired_text(request_id: str) -> str | None:
    """Say a kind last word when a request closes unanswered."""
    ctx = context()
    to = _recipient(ctx, request_id)
    return None if to is None else _text_caller(ctx, to, "expired", "sms.expired")


def survey_text(request_id: str) -> str | None:
    """Ask a caller a counsellor reached how much the call helped (once per request)."""
    ctx = context()
    if ctx.queue.send_record(request_id, SURVEY).result:
        return None  # sent (or settled as unsendable) by an earlier run of this job
    to = _recipient(ctx, request_id)  # texts still OK, not opted out since the call
    if to is None or not ctx.surveys.wanted(to.request):
        return None
    # Waiting for the answer before the text goes, so a quick reply is heard; not while
    # the text has not gone (a retry opens it again).
    ctx.surveys.opening(to.who, to.request)
    try:
        sid = _text_caller(ctx, to, SURVEY, "sms.survey")
    except BaseException:
        ctx.surveys.not_sent(to.who, request_id)
        raise
    if sid is None:
        ctx.surveys.not_sent(to.who, request_id)
        return None
    ctx.surveys.sent()
    return sid


def housekeeping() -> dict[str, int]:
    """Expire stale requests, catch up missed confirmations, hand on the surveys due,
    purge, sample the queue."""
    ctx = context()
    settings = ctx.settings
    expired = ctx.queue.expire(settings.callback_expiry_hours * 3600)
    for request_id in expired:
        ctx.jobs.expired(request_id)
    due = ctx.client.zrangebyscore(UNCONFIRMED, "-inf", time.time() - CONFIRM_GRACE_SECONDS)
    # A confirmation still queued, retrying or running keeps its job: only lost ones rejoin.
    caught_up = sum(ctx.jobs.confirm(_str(raw)) for raw in due)
    surveys = ctx.surveys.due()
    for request_id in surveys:
        ctx.jobs.survey(request_id)  # refused while the same survey's job is still queued
        ctx.surveys.handed_on(request_id)
    purged = retention.purge(ctx.queue, ctx.audit, settings.retention_days)
    purged += ctx.checkin_sessions.purge(settings.checkin_retention_hours * 3600)
    ctx.queue.sample_history(time.time())
    return {
        "expired": len(expired),
        "confirmations": caught_up,
        "surveys": len(surveys),
        "purged": purged,
    }


def _str(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
