"""The queue, taking the next caller, calling them through the helpline, outcomes."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from helpline.callbacks.blocks import DEFAULT_BLOCK_DAYS
from helpline.callbacks.queue import Outcome, Request, Status
from helpline.infrastructure.constants import CONSOLE_POLL_SECONDS, MAX_NOTE_CHARS
from helpline.infrastructure.errors import NotYours, QueueError
from helpline.infrastructure.privacy import mask_phone
from helpline.web.bridge import CALLER_FIELD, STATUS_FIELD
from helpline.web.console import bp, console
from helpline.web.console.auth import current
from helpline.web.console.chart import history_charts
from helpline.web.services import helpline

log = logging.getLogger(__name__)
REQUEST_ID = re.compile(r"^[0-9a-f]{12}$")
OUTCOME_LABELS = {
    Outcome.REACHED: "Reached: we spoke",
    Outcome.NO_ANSWER: "No answer: try again later",
    Outcome.WRONG_NUMBER: "Wrong number",
    Outcome.CALL_BACK_LATER: "Call back at a chosen time",
    Outcome.CANCELLED: "Cancelled: no longer wanted",
}
ON_A_CALL = (
    "You are on a call through the helpline now. When it ends, you can take the next caller."
)
CHANNEL_LABELS = {"voice": "call", "sms": "text", "whatsapp": "WhatsApp"}
# Texts about a request, by kind, as a counsellor reads them.
TEXT_KINDS = {
    "confirm": "Confirmation",
    "expired": "Closing message",
    "missed": "Missed call",
    "survey": "Follow-up survey",
}
UNSENT_REASONS = {
    "outside-whatsapp-window": (
        "not sent: over 24 hours since their last WhatsApp message, and no approved "
        "template is set up"
    ),
}


@bp.app_template_filter("language")
def language_name(code: str) -> str:
    """A language as its speakers name it ("Español"), not its code."""
    found = helpline().library.content.languages.get(code)
    return found.name if found is not None else code


@bp.app_template_filter("masked")
def masked(number: str) -> str:
    """A number with all but its last three digits hidden."""
    return mask_phone(number)


@bp.app_template_filter("channel")
def channel_label(name: str) -> str:
    """How a channel is named in the console: call, text or WhatsApp."""
    return CHANNEL_LABELS.get(name, name)


def texts_sent(rid: str) -> list[tuple[str, str]]:
    """The texts to the caller about a request: (what, how it went), for the request page."""
    rows = []
    for kind, result in sorted(helpline().queue.send_results(rid).items()):
        base, _, attempt = kind.partition(":")
        if base not in TEXT_KINDS:
            continue  # counsellors' alerts are not texts to the caller
        what = TEXT_KINDS[base] + (f" (attempt {attempt})" if attempt else "")
        rows.append((what, _result_label(result)))
    return rows


def _result_label(result: str) -> str:
    if result == "opted-out":
        return "not sent: they opted out of texts"
    if result.startswith("failed:"):
        return f"refused by Twilio (error {result.removeprefix('failed:')})"
    if result.startswith("unsent:"):
        reason = result.removeprefix("unsent:")
        return UNSENT_REASONS.get(reason, f"not sent: {reason}")
    return "sent"


def wait_text(seconds: float) -> str:
    """Return a wait as people say it: '4 min', '1 h 5 min'."""
    minutes = int(max(seconds, 0) // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _mine(requests: list[Request]) -> Request | None:
    username = current().username
    return next(
        (r for r in requests if r.status is Status.CLAIMED and r.claimed_by == username), None
    )


def _queue_context() -> dict[str, object]:
    services = helpline()
    now = time.time()
    version = services.queue.version()
    active = services.queue.active()
    waiting = [r for r in active if r.status is Status.WAITING and r.due_at is None]
    counts = services.queue.counts()
    oldest = services.queue.oldest_waiting()
    longest = 0.0 if oldest is None else now - oldest
    return {
        "version": version,
        "now": now,
        "waiting": waiting,
        "before": services.queue.times_before(r.id for r in waiting),
        "claimed": [r for r in active if r.status is Status.CLAIMED],
        "scheduled": [r for r in active if r.status is Status.WAITING and r.due_at is not None],
        "counts": counts,
        "longest": wait_text(longest) if waiting else "none waiting",
        "mine": _mine(active),
        "charts": history_charts(services.queue, now),
        "wait_text": wait_text,
        "local_time": local_time,
        "escalations": services.checkins.escalations(),
    }


def local_time(stamp: float | None) -> str:
    if stamp is None:
        return ""
    zone = ZoneInfo(helpline().settings.zone)
    return datetime.fromtimestamp(stamp, zone).strftime("%a %d %b %H:%M")


@bp.get("/")
def queue_page() -> str:
    services = helpline()
    on_a_call = services.live_calls.current(current().username) is not None
    return render_template(
        "console/queue.html",
        poll=CONSOLE_POLL_SECONDS,
        on_a_call=ON_A_CALL if on_a_call else None,
        hours=_hours_text(),
        on_duty=bool(getattr(services.counsellors.get(current().username), "on_duty", False)),
        **_queue_context(),
    )


def _hours_text() -> str:
    """When counsellors are on duty, and whether they are now, as the queue page says it."""
    services = helpline()
    hours, zone = services.hours, services.settings.zone
    if hours.windows is None:
        return "Call backs run at any hour."
    now = datetime.now(ZoneInfo(zone))
    state = "open now" if hours.is_open(now) else "closed now"
    return f"Call back hours: {hours.describe()} ({zone} time); {state}."


@bp.post("/duty")
def my_duty() -> BaseResponse:
    """Go on or off duty yourself (on duty: urgent requests text your phone)."""
    me = current().username
    on = request.form.get("on_duty") == "1"
    helpline().counsellors.set_on_duty(me, on)
    console().audit.record(me, "duty_on" if on else "duty_off", detail=me)
    flash("You are on duty: urgent requests will text your phone." if on else "You are off duty.")
    return redirect(url_for("console.queue_page"))


@bp.get("/queue/live")
def live() -> BaseResponse | str:
    """Return the queue fragment when the queue changed since ?v=, else 204."""
    seen = request.args.get("v", "")
    services = helpline()
    # Escalated check-ins change apart from the queue: while any is open, always send.
    quiet = not services.checkins.escalations()
    if quiet and seen.isdigit() and int(seen) == services.queue.version():
        return BaseResponse(status=204)
    return render_template("console/_queue.html", **_queue_context())


@bp.post("/take")
def take_next() -> BaseResponse:
    """Claim the most urgent caller (atomically), then open their page."""
    services = helpline()
    username = current().username
    held = _mine(services.queue.active())
    if held is not None:
        flash("Finish or release the callback you have before taking another.")
        return redirect(url_for("console.request_page", rid=held.id))
    if services.live_calls.current(username) is not None:
        flash(ON_A_CALL, "error")
        return redirect(url_for("console.queue_page"))
    claimed = services.queue.claim_next(username)
    if claimed is None:
        flash("Nobody is waiting right now.")
        return redirect(url_for("console.queue_page"))
    console().audit.record(username, "claim", claimed.id)
    return redirect(url_for("console.request_page", rid=claimed.id))


def _claimed_by_me(rid: str) -> Request:
    if not REQUEST_ID.match(rid):
        abort(404)
    found = helpline().queue.get(rid)
    if found is None:
        abort(404)
    if found.status is not Status.CLAIMED or found.claimed_by != current().username:
        abort(403)
    return found


@bp.get("/requests/<rid>")
def request_page(rid: str) -> tuple[str, int]:
    """Show a claimed request with its number: every view is audited."""
    return _request_page(_claimed_by_me(rid))


def _request_page(
    found: Request, errors: dict[str, str] | None = None, status: int = 200
) -> tuple[str, int]:
    """The request's page; errors (by field) are shown beside their fields, with the
    values the counsellor sent kept in the form."""
    rid = found.id
    services = helpline()
    phone = services.queue.phone(rid)
    extras = console()
    extras.audit.record(current().username, "reveal", rid)
    earlier = [
        (old, extras.notes.list(old.id), services.surveys.words(old.id))
        for old in services.queue.earlier(rid)
    ]
    if earlier:
        # Their earlier requests' notes (and survey words) are shown too: a view of each,
        # on the record.
        detail = ",".join(old.id for old, _, _ in earlier)
        extras.audit.record(current().username, "history", rid, detail)
    return render_template(
        "console/request.html",
        req=found,
        phone=phone,
        notes=extras.notes.list(rid),
        texts=texts_sent(rid),
        earlier=earlier,
        may_block=may_block(),
        blocked=services.blocks.blocked(phone),
        block_days=DEFAULT_BLOCK_DAYS,
        outcome_labels={outcome.value: label for outcome, label in OUTCOME_LABELS.items()},
        call_status=services.queue.annotation(rid, STATUS_FIELD),
        caller_status=services.queue.annotation(rid, CALLER_FIELD),
        outcomes=OUTCOME_LABELS,
        wait_text=wait_text,
        local_time=local_time,
        now=time.time(),
        zone=services.settings.zone,
        max_note=MAX_NOTE_CHARS,
        poll=CONSOLE_POLL_SECONDS,
        errors=errors or {},
        values=request.form if errors else {},
    ), status


@bp.get("/requests/<rid>/call-status")
def call_status(rid: str) -> BaseResponse:
    """Return how the bridged call is going, for the request page to show as it changes.

    Only the status: no number, so this is not a view of the request to audit.
    """
    _claimed_by_me(rid)
    queue = helpline().queue
    status = queue.annotation(rid, STATUS_FIELD) or ""
    response = jsonify(status=status, caller=queue.annotation(rid, CALLER_FIELD) or "")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/requests/<rid>/call")
def call_now(rid: str) -> BaseResponse:
    """Queue the job that rings the counsellor's phone and then bridges the caller."""
    _claimed_by_me(rid)
    username = current().username
    if not helpline().live_calls.start(username, rid):
        flash(ON_A_CALL, "error")
        return redirect(url_for("console.request_page", rid=rid))
    helpline().queue.extend(rid, username)
    extras = console()
    helpline().queue.annotate(rid, **{STATUS_FIELD: "starting the call"})
    helpline().jobs.call_counsellor(rid, username)
    extras.audit.record(username, "call", rid)
    flash("Calling your phone now. Answer it and you will be connected to the caller.")
    return redirect(url_for("console.request_page", rid=rid))


def may_block() -> bool:
    """Admins may block a caller; counsellors too where HELPLINE_COUNSELLORS_MAY_BLOCK=1."""
    return current().admin or helpline().settings.counsellors_may_block


@bp.post("/requests/<rid>/block")
def block_caller(rid: str) -> BaseResponse:
    """Stop this caller queueing call backs for a while; safety replies still reach them."""
    _claimed_by_me(rid)
    if not may_block():
        abort(403)
    services = helpline()
    try:
        days = float(request.form.get("days") or DEFAULT_BLOCK_DAYS)
        block = services.blocks.add(
            services.queue.phone(rid),
            reason=request.form.get("reason", ""),
            days=days,
            by=current().username,
        )
    except ValueError as exc:
        message = str(exc) if "could not convert" not in str(exc) else "give the days as a number"
        flash(f"Not blocked: {message}.", "error")
        return redirect(url_for("console.request_page", rid=rid))
    console().audit.record(current().username, "block", rid, block.masked)
    flash(f"Blocked from call backs until {block.ends}. Safety replies still reach them.")
    return redirect(url_for("console.request_page", rid=rid))


@bp.post("/requests/<rid>/extend")
def extend(rid: str) -> BaseResponse:
    _claimed_by_me(rid)
    helpline().queue.extend(rid, current().username)
    flash("You have this callback for another 15 minutes.")
    return redirect(url_for("console.request_page", rid=rid))


@bp.post("/requests/<rid>/release")
def release(rid: str) -> BaseResponse:
    _claimed_by_me(rid)
    username = current().username
    helpline().queue.release(rid, username)
    console().audit.record(username, "release", rid)
    flash("Released: the caller is back in the queue in their old place.")
    return redirect(url_for("console.queue_page"))


@bp.post("/requests/<rid>/notes")
def add_note(rid: str) -> BaseResponse:
    _claimed_by_me(rid)
    text = request.form.get("note", "").strip()
    if not text:
        flash("The note was empty, so nothing was saved.")
    elif len(text) > MAX_NOTE_CHARS:
        flash(f"Notes are at most {MAX_NOTE_CHARS} characters; nothing was saved.")
    else:
        console().notes.add(rid, current().username, text)
        console().audit.record(current().username, "note", rid)
        flash("Note saved (encrypted).")
    return redirect(url_for("console.request_page", rid=rid))


def _call_back_at(text: str) -> float | None:
    """Read a datetime-local value in the helpline's own time zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=ZoneInfo(helpline().settings.zone)).timestamp()


@bp.post("/requests/<rid>/outcome")
def record_outcome(rid: str) -> BaseResponse | tuple[str, int]:
    found = _claimed_by_me(rid)
    username = current().username
    try:
        outcome = Outcome(request.form.get("outcome", ""))
    except ValueError:
        return _request_page(found, {"outcome": "Choose what happened."}, 422)
    call_back_at = None
    if outcome is Outcome.CALL_BACK_LATER:
        call_back_at = _call_back_at(request.form.get("call_back_at", ""))
        if call_back_at is None:
            error = "Choose a date and time in the future to call back."
            return _request_page(found, {"call_back_at": error}, 422)
    try:
        status = helpline().queue.record(rid, username, outcome, call_back_at=call_back_at)
    except NotYours:
        flash("That callback is no longer yours: its claim ran out and it went back.", "error")
        return redirect(url_for("console.queue_page"))
    except QueueError as exc:
        flash(str(exc).capitalize() + ".", "error")
        return redirect(url_for("console.request_page", rid=rid))
    extras = console()
    if outcome is Outcome.NO_ANSWER and status is Status.WAITING:
        helpline().jobs.missed_call(rid, found.attempts + 1)
    if outcome is Outcome.REACHED:
        helpline().surveys.reached(found)
    extras.audit.record(username, "outcome", rid, outcome.value)
    flash(f"Recorded: {OUTCOME_LABELS[outcome]}.")
    return redirect(url_for("console.queue_page"))
