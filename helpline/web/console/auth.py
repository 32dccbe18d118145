"""Logging in and out, who is logged in, and who may see what."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import (
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response as BaseResponse

from helpline.counsellors.accounts import USERNAME, Counsellor
from helpline.infrastructure.constants import LOGIN_LOCK_SECONDS
from helpline.web.console import bp, console
from helpline.web.console.notices import queue_notice
from helpline.web.services import helpline
from helpline.web.sessions import USER, RedisSession

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

# One message for every failed login: it must not tell a wrong username from a wrong
# password, nor a slowed account from a missing one.
LOGIN_FAILED = (
    "Those details did not work. Check them and try again. After repeated failures, "
    f"further tries must wait a while (at most {LOGIN_LOCK_SECONDS // 60} minutes); if you "
    "still cannot log in, ask an admin to unlock your account."
)
HTTPS_ONLY = "The console only accepts logins over https. Open it at its https:// address."
# Said instead of redirecting to https again and again (a loop no browser gets out of).
UNTRUSTED_PROXY = (
    "The console only accepts https, and this request came through a proxy the helpline "
    "does not trust. An operator must add its address to HELPLINE_TRUSTED_PROXIES."
)
# Endpoints that are not the counsellor's own doing and so do not keep a session alive.
PASSIVE_ENDPOINTS = frozenset({"console.live", "console.call_status"})
PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})


def require_https() -> BaseResponse | tuple[str, int] | None:
    """In production, keep the console (and so every password) off plain http.

    Registered on the app ahead of the CSRF check, so a form posted over http is refused
    for what it is, whatever its token.
    """
    settings = helpline().settings
    if not settings.production or request.scheme == "https" or request.blueprint != bp.name:
        return None
    if request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        log.warning(
            "console request through an untrusted proxy refused", extra={"path": request.path}
        )
        return render_template("console/error.html", message=UNTRUSTED_PROXY), 403
    if request.method in ("GET", "HEAD"):
        base = settings.public_url or f"https://{request.host}{request.script_root}"
        query = request.query_string.decode("latin-1")
        return redirect(base + request.path + (f"?{query}" if query else ""), 308)
    log.warning("console form refused over plain http", extra={"path": request.path})
    return render_template("console/error.html", message=HTTPS_ONLY), 403


@bp.before_request
def load_counsellor() -> BaseResponse | None:
    """Find who is logged in; an account disabled meanwhile is logged out at once."""
    if isinstance(session, RedisSession) and request.endpoint in PASSIVE_ENDPOINTS:
        session.passive = True
    g.counsellor = None
    username = session.get(USER)
    if username:
        account = console().counsellors.get(username)
        if account is None or account.disabled:
            session.clear()
        else:
            g.counsellor = account
    if g.counsellor is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.endpoint in PASSIVE_ENDPOINTS:
            return Response("logged out\n", 401, mimetype="text/plain")
        return redirect(url_for("console.login", next=request.path))
    return None


@bp.app_errorhandler(CSRFError)
def csrf_refused(exc: CSRFError) -> tuple[str, int]:
    log.warning("form refused: CSRF token missing or wrong", extra={"path": request.path})
    return render_template("console/error.html", message=exc.description), 400


def current() -> Counsellor:
    """Return the logged-in counsellor (the views below only run with one)."""
    account: Counsellor = g.counsellor
    return account


def admin_required(view: F) -> F:
    """Let only admins through; everyone else gets 403."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current().admin:
            abort(403)
        return view(*args, **kwargs)

    return cast(F, wrapped)


def _safe_next(target: str | None) -> str:
    """Follow ?next= only within the console, never to another site."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return url_for("console.queue_page")


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int]:
    if g.counsellor is not None:
        return redirect(_safe_next(request.args.get("next")))
    if request.method == "GET":
        return render_template("console/login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip().lower()[:64]
    password = request.form.get("password", "")[:1024]
    services = console()
    account = None
    shown = username if USERNAME.match(username) else "?"
    # The client's address: the socket's peer, or what a trusted proxy says it saw.
    address = request.remote_addr or ""
    device = services.devices.nonce(request, username)
    if services.throttle.wait(username, address, device) == 0:
        account = services.counsellors.authenticate(username, password)
        if account is None and services.throttle.failed(username, address, device):
            _under_attack(shown)
    if account is None:
        services.audit.record(shown, "login_failed")
        return render_template(
            "console/login.html", error=LOGIN_FAILED, username=username, next=""
        ), 401
    services.throttle.succeeded(username, address, device)
    assert isinstance(session, RedisSession)
    session.regenerate()
    session[USER] = account.username
    services.audit.record(account.username, "login")
    response = redirect(_safe_next(request.form.get("next")))
    services.devices.remember(response, account.username)
    return response


def _under_attack(username: str) -> None:
    """Record that unknown clients' wrong passwords now slow an account; tell its holder."""
    services = console()
    services.audit.record(username, "login_slowed")
    log.warning("wrong passwords from unknown clients now slow logins to one account")
    account = services.counsellors.get(username) if username != "?" else None
    if account is not None and not account.disabled:
        queue_notice(helpline().jobs, username)


@bp.post("/logout")
def logout() -> BaseResponse:
    services = console()
    services.audit.record(current().username, "logout")
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("console.login"))
