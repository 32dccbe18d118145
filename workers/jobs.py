"""RQ jobs: every outbound text and call, and the queue's housekeeping.

Jobs take request ids and plain values, never phone numbers: a job's arguments are
stored in Redis and shown by RQ's tools. Each send records Twilio's SID on the request
before the job counts as done, and a retry first checks whether an earlier attempt got
through, so a crash or a kill mid-send never texts anyone twice.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from helpline import embedded, retention
from helpline.audit import AuditLog
from helpline.callbacks import OPEN_STATUSES, REQ, UNCONFIRMED, CallbackQueue, Request
from helpline.config import Settings, load_settings
from helpline.constants import HISTORY_SAMPLE_SECONDS, KEY_PREFIX
from helpline.counsellors import Counsellors
from helpline.errors import Failure, OutboundError
from helpline.flows.gsm import as_sent
from helpline.flows.lint import Library, load_flows
from helpline.outbound import find_sent, make_client, send_text
from helpline.sms import OPT_OUT_KEY
from workers.main import FAILURE_TTL, URGENT_QUEUE, connect
from workers.main import queue as job_queue

log = logging.getLogger(__name__)

# Twilio 5xx, 429 and network errors: try again with growing gaps (seconds).
RETRY = Retry(max=6, interval=[10, 30, 60, 120, 300, 600])
# A confirmation not sent this long after queueing is picked up by housekeeping.
CONFIRM_GRACE_SECONDS = 60
HOUSEKEEPING_LOCK = f"{KEY_PREFIX}:housekeeping"
HISTORY = f"{KEY_PREFIX}:cb:history"
HISTORY_LOCK = f"{KEY_PREFIX}:cb:history:lock"


# -- the worker's resources, built once per process ----------------------------------------


@dataclass
class Context:
    settings: Settings
    client: redis.Redis
    queue: CallbackQueue
    counsellors: Counsellors
    library: Library

    @functools.cached_property
    def twilio(self) -> Any:
        return make_client(self.settings)

    def warm(self) -> None:
        """Load what the first job would otherwise load (the client's API modules)."""
        self.twilio.messages  # noqa: B018  (each is imported on first use)
        self.twilio.calls  # noqa: B018

    def text(self, key: str, lang: str, **values: str) -> str:
        content = self.library.content
        variables = {**self.settings.region.variables(lang), **values}
        gsm = content.languages[lang].gsm
        return as_sent(content.text(key, lang, variables), gsm)


@functools.cache
def context() -> Context:
    """Return this process's resources, read from the environment like every process."""
    settings = load_settings()
    client = connect(embedded.resolve_redis_url(settings.redis_url, settings.data_dir))
    queue = CallbackQueue.for_secret(client, settings.encryption_secret)
    return Context(
        settings=settings,
        client=client,
        queue=queue,
        counsellors=Counsellors(client, queue.sealer),
        library=load_flows(settings.flows_dir),
    )


# -- enqueueing (called by the web process) ------------------------------------------------


def after_queued(jobs: Queue, request: Request, *, confirm: bool) -> None:
    """Queue the work a request needs when it is made or raised to urgent: confirm, alert."""
    if confirm:
        _enqueue_once(jobs, confirm_request, request.id, f"confirm-{request.id}")
    if request.urgent:
        _enqueue_once(jobs, alert_counsellors, request.id, f"alert-{request.id}")


def _enqueue_once(jobs: Queue, job: Any, request_id: str, job_id: str) -> bool:
    """Queue a job under a fixed id unless a job with that id exists; True if queued.

    Two copies of one job must never run side by side: each would see nothing sent yet.
    Urgent jobs go on the urgent queue, whichever queue `jobs` is.
    """
    if job in URGENT_JOBS:
        jobs = job_queue(jobs.connection, URGENT_QUEUE)
    try:
        jobs.enqueue(
            job, request_id, retry=RETRY, job_id=job_id, unique=True, failure_ttl=FAILURE_TTL
        )
    except DuplicateJobError:
        return False
    return True


# -- sending exactly once ------------------------------------------------------------------


def send_once(ctx: Context, request_id: str, kind: str, to: str, body: str, who: str) -> str | None:
    """Text `to` once per (request, kind); return the SID, or None if it cannot be sent.

    Before sending, a marker records the attempt and its text. If a marker is found
    without a SID, an earlier attempt died mid-send: Twilio's message log says whether
    it went. The text of the first attempt is the one looked for and sent: a queue
    position may have changed since, and a new text would not match the one that went.
    """
    key = REQ + request_id
    sent, started, attempted = ctx.client.hmget(
        key, [f"sent:{kind}", f"sending:{kind}", f"text:{kind}"]
    )
    if sent:
        return _str(sent)
    sender = ctx.settings.phone_number
    if started:
        body = _str(attempted) if attempted else body
        sid = find_sent(ctx.twilio, sender=sender, to=to, body=body, since=float(started))
        if sid:
            ctx.client.hset(key, f"sent:{kind}", sid)
            return sid
    ctx.client.hset(key, mapping={f"sending:{kind}": time.time(), f"text:{kind}": body})
    try:
        sid = send_text(ctx.twilio, sender=sender, to=to, body=body)
    except OutboundError as exc:
        if exc.kind is Failure.OPTED_OUT:
            ctx.client.sadd(OPT_OUT_KEY, who)
            ctx.client.hset(key, f"sent:{kind}", "opted-out")
            log.info("not texted: the recipient has opted out", extra={"request": request_id})
            return None
        if exc.kind is Failure.PERMANENT:
            ctx.client.hset(key, f"sent:{kind}", f"failed:{exc.code or exc.status}")
            log.error(
                "text refused by Twilio",
                extra={"request": request_id, "kind": kind, "code": exc.code},
            )
            return None
        raise  # worth retrying: RQ does, with backoff
    ctx.client.hset(key, f"sent:{kind}", sid)
    log.info("text sent", extra={"request": request_id, "kind": kind})
    return sid


def _recipient(ctx: Context, request_id: str) -> tuple[Request, str, str] | None:
    """Return the request, its number and keyed hash if it may be texted now."""
    request = ctx.queue.get(request_id)
    if request is None:
        return None
    who = ctx.client.hget(REQ + request_id, "who")
    if not request.texts_ok or who is None:
        return None
    who_text = _str(who)
    if ctx.client.sismember(OPT_OUT_KEY, who_text):
        log.info("not texted: opted out", extra={"request": request_id})
        return None
    return request, ctx.queue.phone(request_id), who_text


# -- jobs ----------------------------------------------------------------------------------


def confirm_request(request_id: str) -> str | None:
    """Text a caller that their request is queued, with their place."""
    ctx = context()
    try:
        found = _recipient(ctx, request_id)
        if found is None or found[0].status not in OPEN_STATUSES:
            return None
        request, phone, who = found
        position = ctx.queue.position(request_id)
        body = (
            ctx.text("sms.confirm_queued", request.lang, position=str(position))
            if position
            else ctx.text("sms.confirm_soon", request.lang)
        )
        return send_once(ctx, request_id, "confirm", phone, body, who)
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


# Jobs that must never wait behind routine texts: workers take them first.
URGENT_JOBS = frozenset({alert_counsellors})


def missed_call_text(request_id: str, attempt: int) -> str | None:
    """Tell a caller we tried and will try again (when texts are welcome)."""
    ctx = context()
    found = _recipient(ctx, request_id)
    if found is None:
        return None
    request, phone, who = found
    body = ctx.text("sms.missed_call", request.lang)
    return send_once(ctx, request_id, f"missed:{attempt}", phone, body, who)


def expired_text(request_id: str) -> str | None:
    """Say a kind last word when a request closes unanswered."""
    ctx = context()
    found = _recipient(ctx, request_id)
    if found is None:
        return None
    request, phone, who = found
    return send_once(ctx, request_id, "expired", phone, ctx.text("sms.expired", request.lang), who)


def housekeeping() -> dict[str, int]:
    """Expire stale requests, catch up missed confirmations, purge, sample the queue."""
    ctx = context()
    jobs = job_queue(ctx.client)
    settings = ctx.settings
    expired = ctx.queue.expire(settings.callback_expiry_hours * 3600)
    for request_id in expired:
        _enqueue_once(jobs, expired_text, request_id, f"expired-{request_id}")
    due = ctx.client.zrangebyscore(UNCONFIRMED, "-inf", time.time() - CONFIRM_GRACE_SECONDS)
    # A confirmation still queued, retrying or running keeps its job: only lost ones rejoin.
    caught_up = sum(
        _enqueue_once(jobs, confirm_request, _str(raw), f"confirm-{_str(raw)}") for raw in due
    )
    purged = retention.purge(ctx.queue, AuditLog(ctx.client), settings.retention_days)
    _sample_history(ctx)
    return {"expired": len(expired), "confirmations": caught_up, "purged": purged}


def _sample_history(ctx: Context) -> None:
    """Keep a 24-hour record of queue depth and the longest wait, for the console chart."""
    if not ctx.client.set(HISTORY_LOCK, 1, nx=True, ex=HISTORY_SAMPLE_SECONDS):
        return
    now = time.time()
    ctx.queue.refresh()  # expired leases and due retries count as waiting again
    counts = ctx.queue.counts()
    oldest = ctx.queue.oldest_waiting()
    longest = 0.0 if oldest is None else now - oldest
    sample = f"{now:.0f}:{counts['urgent']}:{counts['normal']}:{longest:.0f}"
    pipe = ctx.client.pipeline()
    pipe.zadd(HISTORY, {sample: now})
    pipe.zremrangebyscore(HISTORY, "-inf", now - 24 * 3600)
    pipe.execute()


def _str(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
