"""Check-in jobs: place the call, text "reply OK", alert the counsellors and the contact.

Each takes a session id and an attempt or round, never a number: the numbers are read
from the session (sealed) when they are needed. Each is safe to run twice: a call is
placed once per (session, attempt), and each text once per (session, kind), recorded on
the session before the job ends; a job that died mid-call looks in Twilio's call log.
"""

from __future__ import annotations

import json
import logging

from helpline.application.checkin import DANGER_SAID
from helpline.application.messaging import OPT_OUT_KEY
from helpline.checkins.sessions import Claimed, Status, Work
from helpline.counsellors.accounts import Counsellor
from helpline.infrastructure.errors import Failure, OutboundError
from helpline.infrastructure.outbound import find_call, place_call
from helpline.infrastructure.privacy import phone_digest
from helpline.web.bridge import public_base
from helpline.web.checkin import answer_url, make_token, status_url
from workers.jobs import Context, context, send_once

log = logging.getLogger(__name__)

# Seconds the check-in call rings before Twilio gives up (then: no-answer, a retry).
RING_SECONDS = 30
# Characters of the place a counsellor's alert text carries (the console shows it all).
ALERT_PLACE_CHARS = 100


def place_checkin_call(session_id: str, attempt: int) -> str | None:
    """Call the caller for this attempt, once; return the Call SID, or None."""
    ctx = context()
    sessions = ctx.checkin_sessions
    claim = Claimed(Work.CALL, session_id, attempt)
    session = sessions.get(session_id)
    if session is None or session.status is not Status.OPEN or session.attempt != attempt:
        sessions.finished(claim)
        return None  # answered, put off or closed since it was claimed
    call_sid, started = sessions.calling(session_id, attempt)
    if call_sid:
        sessions.finished(claim)
        return call_sid
    settings = ctx.settings
    to = sessions.phone(session_id)
    if started is not None:
        found = find_call(ctx.twilio, sender=settings.phone_number, to=to, since=started)
        if found:
            sessions.placed(session_id, attempt, found, ctx.checkins.timing.silent)
            sessions.finished(claim)
            return found
    sessions.placing(session_id, attempt)
    token = make_token(ctx.sealer, session_id, attempt)
    try:
        call_sid = place_call(
            ctx.twilio,
            sender=settings.phone_number,
            to=to,
            url=answer_url(settings, token),
            status_callback=status_url(settings, token),
            machine_detection=True,
            timeout=RING_SECONDS,
        )
    except OutboundError as exc:
        if exc.kind is Failure.RETRY:
            raise  # RQ tries again shortly; the attempt record stops a second call
        log.error("check-in call refused", extra={"session": session_id, "code": exc.code})
        ctx.checkins.missed(session_id, attempt, "refused")
        sessions.finished(claim)
        return None
    sessions.placed(session_id, attempt, call_sid, ctx.checkins.timing.silent)
    sessions.finished(claim)
    log.info("check-in call placed", extra={"session": session_id, "attempt": attempt})
    return call_sid


def place_checkin_calls(items: str) -> int:
    """Place several due calls ([[session, attempt], ...] as JSON); return how many went.

    One that Twilio asks us to retry gets a job of its own, with the usual retries.
    """
    placed = 0
    for session_id, attempt in json.loads(items):
        try:
            placed += place_checkin_call(str(session_id), int(attempt)) is not None
        except OutboundError:
            context().jobs.checkin(Claimed(Work.CALL, str(session_id), int(attempt)))
    return placed


def remind(session_id: str, round_: int) -> str | None:
    """Text the caller "reply OK if you're OK", once per round of calls."""
    ctx = context()
    sessions = ctx.checkin_sessions
    session = sessions.get(session_id)
    who = sessions.recipient(session_id)
    if session is None or session.status is not Status.OPEN or who is None:
        return None
    if ctx.client.sismember(OPT_OUT_KEY, who):
        return None
    body = ctx.text("sms.checkin_reply_ok", session.lang)
    to = sessions.phone(session_id)
    return send_once(ctx, session_id, f"remind:{round_}", to, body, who, records=sessions)


def escalate(session_id: str, attempt: int = 0) -> int:
    """Alert every on-duty counsellor (admins if none is), and text the trusted contact."""
    ctx = context()
    sessions = ctx.checkin_sessions
    session = sessions.get(session_id)
    sent = 0
    if session is not None and session.status is Status.ESCALATED:
        on_duty = ctx.counsellors.on_duty() or [c for c in ctx.counsellors.all() if c.admin]
        said = any(event.detail.endswith(DANGER_SAID) for event in sessions.timeline(session_id))
        key = "sms.checkin_danger_alert" if said else "sms.checkin_counsellor_alert"
        sent = _alert(ctx, session_id, "alert", key, on_duty)
        contact = sessions.contact(session_id)
        if contact:
            who = phone_digest(ctx.phone_key, contact)
            if not ctx.client.sismember(OPT_OUT_KEY, who):
                place = sessions.place(session_id) or ctx.text("sms.checkin_no_place", session.lang)
                body = ctx.text("sms.checkin_contact_alert", session.lang, place=place)
                send_once(ctx, session_id, "contact", contact, body, who, records=sessions)
    sessions.finished(Claimed(Work.ESCALATE, session_id, 0))
    return sent


def realert(session_id: str, attempt: int = 0) -> int:
    """Nobody acknowledged: alert every on-duty counsellor and every admin again."""
    ctx = context()
    sessions = ctx.checkin_sessions
    session = sessions.get(session_id)
    sent = 0
    if session is not None and session.status is Status.ESCALATED and not session.acknowledged_by:
        everyone = {c.username: c for c in ctx.counsellors.on_duty()}
        everyone.update(
            {c.username: c for c in ctx.counsellors.all() if c.admin and not c.disabled}
        )
        recipients = list(everyone.values())
        sent = _alert(ctx, session_id, "realert", "sms.checkin_counsellor_realert", recipients)
    sessions.finished(Claimed(Work.REALERT, session_id, 0))
    return sent


def _alert(
    ctx: Context, session_id: str, kind: str, key: str, counsellors: list[Counsellor]
) -> int:
    lang = ctx.library.content.default_language
    place = ctx.checkin_sessions.place(session_id)[:ALERT_PLACE_CHARS] or ctx.text(
        "sms.checkin_no_place", lang
    )
    console = f"{public_base(ctx.settings)}/console/checkins/{session_id}"
    body = ctx.text(key, lang, place=place, console=console)
    sent = 0
    for counsellor in counsellors:
        phone = ctx.counsellors.phone(counsellor.username)
        who = f"counsellor:{counsellor.username}"
        kept = ctx.checkin_sessions
        if send_once(
            ctx, session_id, f"{kind}:{counsellor.username}", phone, body, who, records=kept
        ):
            sent += 1
    return sent
