"""Telling counsellors that someone keeps trying wrong passwords on their account.

The web process queues a job that carries the username only; the worker reads the
counsellor's number (sealed at rest) and texts them from the helpline's number. At most
one text per account per LOGIN_NOTICE_SECONDS, so the notice cannot be turned into a way
to flood a counsellor's phone. The key that spaces them also records the send, so a
retried job (a timeout or a kill mid-send) looks in Twilio's log before sending again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from rq import Queue

from helpline.console.throttle import LOGINS, account_digest
from helpline.constants import LOGIN_NOTICE_SECONDS
from helpline.errors import OutboundError
from helpline.outbound import find_sent, send_text
from helpline.sms import OPT_OUT_KEY
from workers.jobs import RETRY, context
from workers.main import FAILURE_TTL

log = logging.getLogger(__name__)
NOTICE = LOGINS + "notice:"  # <account>: "queued", "sending:<time>", "sent:<sid>", "failed"
MESSAGE = "sms.login_attempts"
SENDING = "sending:"
SENT = "sent:"


def queue_notice(jobs: Queue, username: str) -> bool:
    """Queue the text to username unless one was queued lately; True if queued now."""
    key = NOTICE + account_digest(username)
    if not jobs.connection.set(key, "queued", nx=True, ex=LOGIN_NOTICE_SECONDS):
        return False
    jobs.enqueue(login_attempts_notice, username, retry=RETRY, failure_ttl=FAILURE_TTL)
    return True


def login_attempts_notice(username: str) -> str | None:
    """Text a counsellor that someone keeps trying wrong passwords on their account."""
    ctx = context()
    account = ctx.counsellors.get(username)
    if account is None or account.disabled:
        return None
    if ctx.client.sismember(OPT_OUT_KEY, f"counsellor:{username}"):
        log.info("login notice not sent: the counsellor has opted out of texts")
        return None
    key = NOTICE + account_digest(username)
    state = _str(ctx.client.get(key))
    if state.startswith(SENT):
        return state.removeprefix(SENT)
    phone = ctx.counsellors.phone(username)
    body = ctx.text(MESSAGE, ctx.library.content.default_language)
    sender = ctx.settings.phone_number
    if state.startswith(SENDING):
        since = float(state.removeprefix(SENDING))
        sid = find_sent(ctx.twilio, sender=sender, to=phone, body=body, since=since)
        if sid:
            _record(ctx.client, key, SENT + sid)
            return sid
    _record(ctx.client, key, f"{SENDING}{time.time()}")
    try:
        sid = send_text(ctx.twilio, sender=sender, to=phone, body=body)
    except OutboundError as exc:
        if exc.retryable:
            raise  # RQ tries again, with backoff
        _record(ctx.client, key, "failed")
        log.warning("login notice refused by Twilio", extra={"code": exc.code})
        return None
    _record(ctx.client, key, SENT + sid)
    log.info("login notice sent", extra={"account": username})
    return sid


def _record(client: redis.Redis, key: str, state: str) -> None:
    client.set(key, state, ex=LOGIN_NOTICE_SECONDS)


def _str(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw or "")
