"""Security headers on every response: console pages, webhooks, health checks and 404s."""

from __future__ import annotations

from flask import Flask, Response

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


def init_app(app: Flask, settings: Settings) -> None:
    """Add the security headers (and, in production, HSTS) to every response the app sends."""
    headers = dict(SECURITY_HEADERS)
    if settings.production:
        headers["Strict-Transport-Security"] = HSTS

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in headers.items():
            response.headers[name] = value
        return response
