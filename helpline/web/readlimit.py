"""A deadline for reading a request's body, so a client trickling bytes is cut off.

gunicorn's gevent worker already bounds the request line and headers (its keep-alive
timeout covers reading them); nothing in gunicorn bounds the body the app then reads.
A signed webhook's body arrives in one packet, so a body still incomplete after
REQUEST_BODY_SECONDS is answered 408 and the connection closed.

The deadline needs a cooperative server (gunicorn's gevent worker), where a read can be
interrupted without a thread or a signal. Elsewhere (the Flask test client, the
threaded server the browser tests use) bodies are read as before.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from werkzeug.exceptions import RequestTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")


class BodyTimedOut(RequestTimeout):
    """The client did not send its whole body in time."""


def cooperative() -> bool:
    """Return whether gevent has patched the socket module (gunicorn's gevent worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


class BodyDeadline:
    """WSGI middleware: every read of wsgi.input must finish within `seconds` of arrival."""

    def __init__(self, app: Callable[..., Iterable[bytes]], seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if cooperative():
            environ["wsgi.input"] = _DeadlineInput(
                environ["wsgi.input"],
                time.monotonic() + self.seconds,
                environ.get("gunicorn.socket"),
                environ.get("PATH_INFO", ""),
            )
        return self.app(environ, start_response)


class _DeadlineInput:
    """wsgi.input whose reads raise BodyTimedOut once the deadline has passed."""

    def __init__(self, stream: Any, deadline: float, sock: socket.socket | None, path: str) -> None:
        self._stream = stream
        self._deadline = deadline
        self._sock = sock
        self._path = path

    def read(self, size: int | None = -1) -> bytes:
        return self._within(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._within(self._stream.readline, size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return self._within(self._stream.readlines, hint)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _within(self, method: Callable[..., T], *args: Any) -> T:
        from gevent import Timeout  # only ever reached under gevent (see cooperative())

        remaining = self._deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise BodyTimedOut()
            with Timeout(remaining, BodyTimedOut):
                return method(*args)
        except BodyTimedOut:
            self._give_up()
            raise

    def _give_up(self) -> None:
        log.warning("request body not received in time; answered 408", extra={"path": self._path})
        if self._sock is not None:
            # After the 408, gunicorn would drain the rest of the body (the trickle)
            # before reading the next request: end the reading side so it sees EOF
            # at once and closes the connection.
            try:
                self._sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
