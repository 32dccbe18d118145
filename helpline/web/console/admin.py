"""Admin pages: counsellor accounts, who is on duty, login unlocks, the audit log, purges."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from helpline.callbacks import retention
from helpline.counsellors.accounts import AccountError
from helpline.infrastructure.phones import to_e164
from helpline.web.console import bp, console
from helpline.web.console.auth import admin_required, current
from helpline.web.console.views import local_time
from helpline.web.services import helpline


@bp.get("/admin")
@admin_required
def admin_page() -> str:
    extras = console()
    action = request.args.get("action") or None
    counsellors = extras.counsellors.all()
    return render_template(
        "console/admin.html",
        counsellors=counsellors,
        slowed={
            c.username: local_time(until)
            for c in counsellors
            if (until := extras.throttle.slowed_until(c.username)) is not None
        },
        entries=extras.audit.recent(action=action),
        action=action or "",
        retention_days=helpline().settings.retention_days,
        blocks=helpline().blocks.all(),
    )


def _back() -> BaseResponse:
    return redirect(url_for("console.admin_page"))


@bp.post("/admin/counsellors")
@admin_required
def add_counsellor() -> BaseResponse:
    form = request.form
    username = form.get("username", "").strip().lower()
    phone = to_e164(form.get("phone", ""), helpline().settings.region.code)
    if phone is None:
        flash("That phone number is not valid; use the full number, e.g. +44 7700 900123.")
        return _back()
    try:
        added = console().counsellors.add(
            username,
            name=form.get("name", ""),
            phone=phone,
            password=form.get("password", ""),
            admin=form.get("admin") == "1",
        )
    except AccountError as exc:
        flash(f"Not added: {exc}.")
        return _back()
    console().audit.record(current().username, "counsellor_add", detail=added.username)
    flash(f"Added {added.username}.")
    return _back()


def known_counsellor(view: Callable[[str], BaseResponse]) -> Callable[[str], BaseResponse]:
    """Send an unknown username back to the admin page, saying so, before the view runs."""

    @functools.wraps(view)
    def wrapped(username: str) -> BaseResponse:
        if console().counsellors.get(username) is None:
            flash("No such counsellor.")
            return _back()
        return view(username)

    return wrapped


@bp.post("/admin/counsellors/<username>/duty")
@admin_required
@known_counsellor
def set_duty(username: str) -> BaseResponse:
    on = request.form.get("on_duty") == "1"
    console().counsellors.set_on_duty(username, on)
    console().audit.record(current().username, "duty_on" if on else "duty_off", detail=username)
    return _back()


@bp.post("/admin/counsellors/<username>/disabled")
@admin_required
@known_counsellor
def set_disabled(username: str) -> BaseResponse:
    disabled = request.form.get("disabled") == "1"
    if disabled and username == current().username:
        flash("You cannot disable your own account.")
        return _back()
    extras = console()
    extras.counsellors.set_disabled(username, disabled)
    if disabled:
        ended = extras.sessions.revoke_user(username)
        flash(f"Disabled {username}; {ended} session(s) ended.")
    else:
        flash(f"Enabled {username}.")
    action = "counsellor_disable" if disabled else "counsellor_enable"
    extras.audit.record(current().username, action, detail=username)
    return _back()


@bp.post("/admin/counsellors/<username>/unlock")
@admin_required
@known_counsellor
def unlock(username: str) -> BaseResponse:
    """Let a counsellor's logins through again, wherever they try from."""
    extras = console()
    extras.throttle.unlock(username)
    extras.audit.record(current().username, "login_unlock", detail=username)
    flash(f"Unlocked {username}: their next login is checked at once, from anywhere.")
    return _back()


@bp.post("/admin/purge")
@admin_required
def purge() -> BaseResponse:
    services = helpline()
    purged = retention.purge(services.queue, console().audit, services.settings.retention_days)
    console().audit.record(current().username, "purge", detail=str(purged))
    flash(f"Purged {purged} closed request(s) older than the retention period.")
    return _back()


@bp.post("/admin/blocks/<who>/remove")
@admin_required
def unblock(who: str) -> BaseResponse:
    """Lift a block: the caller may queue call backs again."""
    blocks = helpline().blocks
    found = next((block for block in blocks.all() if block.who == who), None)
    if found is None or not blocks.remove(who):
        flash("That block had already ended.")
        return _back()
    console().audit.record(current().username, "unblock", detail=found.masked)
    flash(f"{found.masked} may queue call backs again.")
    return _back()


@bp.get("/admin/outbox")
@admin_required
def outbox_page() -> str:
    """What the local outbox kept instead of sending (numbers masked)."""
    services = helpline()
    return render_template(
        "console/outbox.html",
        entries=services.local_outbox.entries(),
        local=services.settings.outbox == "local",
    )
