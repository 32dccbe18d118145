"""The job that starts a bridged callback: ring the counsellor's own phone.

It takes ids only (the request and the counsellor's username); the numbers are read
here, at the moment they are needed. It is not retried automatically: a second
attempt could ring the counsellor twice. The console shows a failure and the
counsellor presses "Call now" again.
"""

from __future__ import annotations

import logging

from helpline.callbacks.queue import Status
from helpline.infrastructure.errors import OutboundError
from helpline.infrastructure.outbound import place_call
from helpline.web.bridge import (
    CALL_FIELD,
    CHECKIN,
    REQUEST,
    STATUS_FIELD,
    answer_url,
    make_token,
    status_url,
)
from workers.jobs import Context, context

log = logging.getLogger(__name__)


def call_counsellor(request_id: str, counsellor: str, kind: str = REQUEST) -> str | None:
    """Call the counsellor from the helpline's number; return the Call SID, or None.

    kind: what the bridge is for, a call back request or (CHECKIN) an escalated check-in.
    Unless the call is placed, the counsellor is free to start another at once.
    """
    ctx = context()
    sid = None
    try:
        sid = _place(ctx, request_id, counsellor, kind)
    finally:
        if sid is None:
            ctx.live_calls.changed(counsellor, request_id, "failed")
    return sid


def _place(ctx: Context, request_id: str, counsellor: str, kind: str) -> str | None:
    if kind == CHECKIN:
        session = ctx.checkin_sessions.get(request_id)
        theirs = session is not None and session.acknowledged_by == counsellor
        annotate = ctx.checkin_sessions.annotate
    else:
        request = ctx.queue.get(request_id)
        theirs = request is not None and request.status is Status.CLAIMED
        theirs = theirs and request is not None and request.claimed_by == counsellor
        annotate = ctx.queue.annotate
    if not theirs:
        log.info("bridge not started: not in their hands", extra={"request": request_id})
        return None
    account = ctx.counsellors.get(counsellor)
    if account is None or account.disabled:
        log.info("bridge not started: account unusable", extra={"request": request_id})
        return None
    token = make_token(ctx.sealer, request_id, counsellor, kind=kind)
    try:
        sid = place_call(
            ctx.twilio,
            sender=ctx.settings.phone_number,
            to=ctx.counsellors.phone(counsellor),
            url=answer_url(ctx.settings, token),
            status_callback=status_url(ctx.settings, token),
        )
    except OutboundError as exc:
        annotate(request_id, **{STATUS_FIELD: "failed to start"})
        log.error(
            "bridge call refused", extra={"request": request_id, "code": exc.code, "kind": exc.kind}
        )
        return None
    annotate(request_id, **{CALL_FIELD: sid, STATUS_FIELD: "ringing your phone"})
    log.info("bridge call placed", extra={"request": request_id, "counsellor": counsellor})
    return sid
