"""Security headers on every response: console pages, webhooks, health checks and 404s.

Added as the response starts, below Flask: one list operation per response, where an
after_request hook would set each header through werkzeug's checked Headers. A header
of the same name a view set (a static file's Cache-Control) is replaced, never doubled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from helpline.application.config import Settings

# Nothing here is for caches or frames, and pages run only our own scripts and styles.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
}
# Production is https only: browsers that have seen it once never try plain http again.
HSTS = "max-age=63072000; includeSubDomains"


class SecurityHeaders:
    """WSGI middleware: the given headers on every response, replacing any of the same name."""

    def __init__(self, app: Callable[..., Iterable[bytes]], headers: dict[str, str]) -> None:
        self.app = app
        self.headers = list(headers.items())
        self.names = frozenset(name.lower() for name in headers)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [pair for pair in headers if pair[0].lower() not in self.names]
            return start_response(status, kept + self.headers, exc_info)

        return self.app(environ, start)


def init_app(app: Flask, settings: Settings) -> None:
    """Add the security headers (and, in production, HSTS) to every response the app sends."""
    headers = dict(SECURITY_HEADERS)
    if settings.production:
        headers["Strict-Transport-Security"] = HSTS
    app.wsgi_app = SecurityHeaders(app.wsgi_app, headers)  # type: ignore[method-assign]
