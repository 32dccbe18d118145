"""The job that tells a counsellor someone keeps trying wrong passwords on their account.

Queued by helpline.web.console.notices, which spaces the notices out; see there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from helpline.application.messaging import OPT_OUT_KEY
from helpline.infrastructure.constants import LOGIN_NOTICE_SECONDS
from helpline.infrastructure.errors import OutboundError
from helpline.infrastructure.outbound import find_sent, send_text
from helpline.web.console.notices import MESSAGE, SENDING, SENT, notice_key
from workers.jobs import context

log = logging.getLogger(__name__)


def login_attempts_notice(username: str) -> str | None:
    """Text a counsellor that someone keeps trying wrong passwords on their account."""
    ctx = context()
    account = ctx.counsellors.get(username)
    if account is None or account.disabled:
        return None
    if ctx.client.sismember(OPT_OUT_KEY, f"counsellor:{username}"):
        log.info("login notice not sent: the counsellor has opted out of texts")
        return None
    key = notice_key(username)
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
