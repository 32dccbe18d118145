"""The counsellor console: log in, work the callback queue, and (admins) run the service."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Flask, current_app, request
from flask_wtf.csrf import CSRFProtect

from helpline.callbacks.notes import Notes
from helpline.counsellors.accounts import Counsellors
from helpline.counsellors.audit import AuditLog
from helpline.counsellors.throttle import LoginThrottle
from helpline.infrastructure.constants import SESSION_ABSOLUTE_SECONDS
from helpline.web.console.devices import KnownDevices
from helpline.web.services import EXTENSION as HELPLINE
from helpline.web.sessions import RedisSessionInterface

EXTENSION = "console"
bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)
csrf = CSRFProtect()


@dataclass
class Console:
    counsellors: Counsellors
    audit: AuditLog
    notes: Notes
    sessions: RedisSessionInterface
    throttle: LoginThrottle
    devices: KnownDevices


def _check_console_form() -> None:
    """Refuse a console form without this session's CSRF token (CSRFError: 400)."""
    if request.blueprint == bp.name:
        csrf.protect()


def init_app(app: Flask) -> Console:
    """Set up sessions in Redis, CSRF protection on every form, and the console's routes."""
    from helpline.web.console import (  # noqa: F401  (routes)
        admin,
        auth,
        checkins,
        errors,
        reports,
        views,
    )

    core = app.extensions[HELPLINE]
    client = core.store.client
    settings = core.settings
    sessions = RedisSessionInterface(client, settings.secret_key)
    app.session_interface = sessions
    app.config.update(
        SESSION_COOKIE_NAME="__Host-helpline" if settings.production else "helpline_session",
        SESSION_COOKIE_SECURE=settings.production,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # A form's token lives as long as the session it belongs to.
        WTF_CSRF_TIME_LIMIT=SESSION_ABSOLUTE_SECONDS,
    )
    # Before the CSRF check: a console form posted over plain http is refused as such.
    app.before_request(auth.require_https)
    # Only the console takes forms from browsers; Twilio's requests are signed instead, so
    # the check (and its cost on every webhook) is the console's alone.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.before_request(_check_console_form)
    console = Console(
        counsellors=core.counsellors,
        audit=core.audit,
        notes=core.notes,
        sessions=sessions,
        throttle=core.throttle,
        devices=KnownDevices(settings.secret_key, production=settings.production),
    )
    app.extensions[EXTENSION] = console
    app.register_blueprint(bp)
    errors.init_app(app)
    return console


def console() -> Console:
    """Return the running app's console services."""
    found: Console = current_app.extensions[EXTENSION]
    return found
