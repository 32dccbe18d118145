"""Security headers on every response: console pages, webhooks, health checks and 404s."""

from __future__ import annotations

from flask import Flask, Response

from helpline.config import Settings

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


def init_app(app: Flask, settings: Settings) -> None:
    """Add the security headers to every response the app sends."""
    headers = dict(SECURITY_HEADERS)

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in headers.items():
            response.headers[name] = value
        return response
