"""The metrics page, and the counting of every webhook Twilio sends us.

/metrics answers only a bearer token equal to HELPLINE_METRICS_TOKEN; with no token
configured it does not exist (404), so nothing about the service is public by default.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from typing import Any

from flask import Blueprint, Flask, Response, abort, request
from prometheus_client import CONTENT_TYPE_LATEST

from helpline.infrastructure.metrics import WEBHOOK_REQUESTS, WEBHOOK_SECONDS
from helpline.web.services import helpline

log = logging.getLogger(__name__)
bp = Blueprint("monitoring", __name__)
# The blueprints whose routes Twilio calls: each request is counted and timed.
WEBHOOKS = frozenset({"twilio", "bridge"})
_STARTED = "helpline.started"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_start)
    app.after_request(_count)


def route() -> str:
    """The route a webhook came in on, as its rule reads (never the values in it)."""
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def _start() -> None:
    request.environ[_STARTED] = time.perf_counter()


def _count(response: Response) -> Response:
    if request.blueprint not in WEBHOOKS:
        return response
    started = request.environ.get(_STARTED)
    seconds = time.perf_counter() - started if started is not None else 0.0
    name = route()
    _counter(name, response.status_code).inc()
    _timer(name).observe(seconds)
    if log.isEnabledFor(logging.DEBUG):
        duration_ms = round(seconds * 1000, 2)
        log.debug(
            "webhook answered",
            extra={"route": name, "status": response.status_code, "duration_ms": duration_ms},
        )
    return response


# A metric's labelled child is looked up under a lock each time; routes and statuses are
# few, so each one's is found once.
@functools.cache
def _counter(name: str, status: int) -> Any:
    return WEBHOOK_REQUESTS.labels(name, str(status))


@functools.cache
def _timer(name: str) -> Any:
    return WEBHOOK_SECONDS.labels(name)


@bp.get("/metrics")
def metrics() -> Response:
    token = helpline().settings.metrics_token
    if not token:
        abort(404)
    offered = request.headers.get("Authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return Response(
            "Unauthorized: send the metrics token as a bearer token\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
            mimetype="text/plain",
        )
    return Response(helpline().monitoring.metrics(), 200, mimetype=CONTENT_TYPE_LATEST)
