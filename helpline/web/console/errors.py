"""The console's own pages for what goes wrong: not found, not allowed, broken, Redis away.

A counsellor never sees a bare server page or a stack trace. Twilio's webhooks keep
their own fail-safe answers: their blueprints handle their errors first, and anything
outside /console gets the plain response it always had.
"""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

PREFIX = "/console"
# Status code -> (title, what happened, what to do). Said plainly, without blame.
PAGES: dict[int, tuple[str, str, str]] = {
    403: (
        "Not available to you",
        "This page is for admins only.",
        "If you need it, ask an admin.",
    ),
    404: (
        "Page not found",
        "There is no page at this address. The link may be old, or the request closed.",
        "Go back to the queue and carry on from there.",
    ),
    500: (
        "Something went wrong",
        "The console hit a problem and could not finish. Nothing you did caused it.",
        "Try again in a moment. If it keeps happening, tell whoever runs the helpline.",
    ),
    503: (
        "The console cannot reach its data",
        "The queue's database is not answering, so the console cannot show or save anything "
        "right now. Texts and calls still get the helpline's safety messages.",
        "Wait a minute, then reload this page. If it stays like this, tell whoever runs "
        "the helpline.",
    ),
}
DATA_UNAVAILABLE = 503
# Any other refusal (a wrong method, a form too large to read, ...).
REFUSED = (
    "That did not go through",
    "The console could not use what the browser sent.",
    "Go back to the queue and try again from there.",
)


def _in_console() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def page(code: int) -> tuple[str, int]:
    """Render the friendly page for code."""
    title, what, then = PAGES.get(code) or (REFUSED if code < 500 else PAGES[500])
    html = render_template("console/error.html", title=title, message=what, then=then)
    return html, code


def friendly(exc: HTTPException) -> HTTPException | tuple[str, int]:
    """Any HTTP error under /console, as a console page; elsewhere, unchanged."""
    if not _in_console() or exc.code is None:
        return exc
    if isinstance(exc, InternalServerError) and isinstance(exc.original_exception, RedisError):
        log.error("console page failed: Redis unavailable", extra={"path": request.path})
        return page(DATA_UNAVAILABLE)
    return page(exc.code)


def init_app(app: Flask) -> None:
    """Register the console's error pages on the app (keyed by class, so a blueprint's
    own catch-all handler, such as the webhooks' fail-safe, still comes first)."""
    app.register_error_handler(HTTPException, friendly)
