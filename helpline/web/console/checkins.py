"""Escalated check-ins: who did not answer, where they said they would be, and what next.

An escalation is at the top of the queue page. Its page shows the caller's number (every
view is audited), the place and the trusted contact, and the timeline of the calls.
Acknowledging it stops the re-alerts; Call now rings the counsellor's phone and bridges
them to the caller; the outcome closes it. Calling the emergency services is the
counsellor's decision, never the software's.
"""

from __future__ import annotations

import re
import time

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from helpline.application.checkin import COUNSELLOR_OUTCOMES
from helpline.checkins.sessions import Session, Status
from helpline.infrastructure.constants import CONSOLE_POLL_SECONDS
from helpline.infrastructure.errors import QueueError
from helpline.web.bridge import CHECKIN, STATUS_FIELD
from helpline.web.console import bp, console
from helpline.web.console.auth import current
from helpline.web.console.views import local_time, wait_text
from helpline.web.services import helpline

SESSION_ID = re.compile(r"^[0-9a-f]{16}$")
OUTCOME_LABELS = {
    "reached_safe": "Reached them: they are safe",
    "emergency_called": "Emergency services called to the place",
    "could_not_reach": "Could not reach them",
}
# What each timeline entry says.
EVENTS = {
    "started": "Check-in booked (minutes)",
    "updated": "Check-in moved (minutes)",
    "calling": "Call attempt due",
    "placed": "Call placed",
    "answered": "Call answered",
    "missed": "Call missed",
    "extended": "Put off 5 minutes",
    "escalated": "Escalated to counsellors",
    "realert": "Counsellors alerted again",
    "acknowledged": "Acknowledged by",
    "closed": "Closed",
}
assert set(OUTCOME_LABELS) == set(COUNSELLOR_OUTCOMES)


def _session(sid: str) -> Session:
    if not SESSION_ID.match(sid):
        abort(404)
    found = helpline().checkins.session(sid)
    if found is None:
        abort(404)
    return found


@bp.get("/checkins/<sid>")
def checkin_page(sid: str) -> str:
    """Show an escalated check-in with the caller's number and place: audited."""
    found = _session(sid)
    services = helpline()
    sessions = services.checkin_sessions
    username = current().username
    console().audit.record(username, "reveal", sid, "checkin")
    return render_template(
        "console/checkin.html",
        session=found,
        open=found.status is Status.ESCALATED,
        phone=sessions.phone(sid),
        place=sessions.place(sid),
        contact=sessions.contact(sid),
        timeline=sessions.timeline(sid),
        events=EVENTS,
        outcomes=OUTCOME_LABELS,
        mine=found.acknowledged_by == username,
        call_status=sessions.annotation(sid, STATUS_FIELD),
        local_time=local_time,
        wait_text=wait_text,
        now=time.time(),
        poll=CONSOLE_POLL_SECONDS,
    )


@bp.post("/checkins/<sid>/acknowledge")
def acknowledge_checkin(sid: str) -> BaseResponse:
    """Take the escalation on: the re-alerts stop, and the others see who has it."""
    _session(sid)
    username = current().username
    if helpline().checkins.acknowledge(sid, username):
        console().audit.record(username, "acknowledge", sid, "checkin")
        flash("It's yours: the other counsellors will not be alerted again.")
    else:
        flash("Someone has this already, or it has closed.")
    return redirect(url_for("console.checkin_page", sid=sid))


@bp.post("/checkins/<sid>/call")
def call_checkin(sid: str) -> BaseResponse:
    """Ring the counsellor's phone, then connect them to the caller (acknowledging it)."""
    found = _session(sid)
    username = current().username
    services = helpline()
    services.checkins.acknowledge(sid, username)
    found = services.checkins.session(sid) or found
    if found.status is not Status.ESCALATED or found.acknowledged_by != username:
        flash("Someone else has this check-in, or it has closed.")
        return redirect(url_for("console.checkin_page", sid=sid))
    services.checkin_sessions.annotate(sid, **{STATUS_FIELD: "starting the call"})
    services.jobs.call_counsellor(sid, username, CHECKIN)
    console().audit.record(username, "call", sid, "checkin")
    flash("Calling your phone now. Answer it and you will be connected to the caller.")
    return redirect(url_for("console.checkin_page", sid=sid))


@bp.post("/checkins/<sid>/outcome")
def checkin_outcome(sid: str) -> BaseResponse:
    _session(sid)
    username = current().username
    outcome = request.form.get("outcome", "")
    try:
        closed = helpline().checkins.record(sid, username, outcome)
    except QueueError:
        flash("Choose an outcome.")
        return redirect(url_for("console.checkin_page", sid=sid))
    console().audit.record(username, "outcome", sid, outcome)
    flash(f"Recorded: {OUTCOME_LABELS[outcome]}." if closed else "It had closed already.")
    return redirect(url_for("console.queue_page"))
