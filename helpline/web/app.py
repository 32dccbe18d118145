"""The web app factory: Twilio's webhooks, the bridged call back and the console."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, redirect, url_for
from werkzeug.wrappers import Response as BaseResponse

from helpline.application.config import Settings, load_settings
from helpline.infrastructure.constants import MAX_WEBHOOK_BYTES, REQUEST_BODY_SECONDS
from helpline.infrastructure.logs import configure_logging
from helpline.infrastructure.proxies import TrustedProxies
from helpline.web.readlimit import BodyDeadline

# Far more than the app's views, hooks and handlers.
SYNC_MEMO_SIZE = 512


class HelplineFlask(Flask):
    """Flask, with each view and hook's sync wrapper worked out once, not per request.

    Flask asks inspect whether every hook and view is a coroutine function on every
    request (seven times for a webhook); the answer never changes for a function. The
    memo is bounded: a callback made per request (after_this_request) is not kept.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except KeyError:
            wrapped = super().ensure_sync(func)
            if len(self._sync) < SYNC_MEMO_SIZE:
                self._sync[func] = wrapped
            return wrapped


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app: Twilio's webhooks and the counsellor console."""
    from helpline.web import bridge, checkin, console, headers, monitoring, services, webhooks

    settings = settings or load_settings()
    configure_logging(settings.log_level)
    app = HelplineFlask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_WEBHOOK_BYTES,
        HELPLINE_SETTINGS=settings,
    )
    # Behind the proxies named in HELPLINE_TRUSTED_PROXIES (and only those), believe
    # X-Forwarded-*: the client's address for the login limits, and the scheme and host
    # for the URL Twilio signed (PUBLIC_URL, when set, takes precedence).
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)  # type: ignore[method-assign]
    # A client that trickles its body is cut off instead of holding a connection open.
    app.wsgi_app = BodyDeadline(app.wsgi_app, REQUEST_BODY_SECONDS)  # type: ignore[method-assign]
    headers.init_app(app, settings)
    services.init_app(app, settings)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(bridge.bp)
    monitoring.init_app(app)
    app.register_blueprint(checkin.bp)
    console.init_app(app)

    @app.get("/")
    def home() -> BaseResponse:
        """Anyone who opens the service's address is looking for the console."""
        return redirect(url_for("console.queue_page"))

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process serves requests. Asks nothing of Redis, which a
        webhook can do without (it answers with the fail-safe)."""
        return Response("ok\n", 200, mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        """Readiness of every part: 200 when all are ok, 503 otherwise."""
        report = services.helpline().readiness.check()
        response = jsonify(report.to_json())
        response.status_code = 200 if report.ready else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    return app
