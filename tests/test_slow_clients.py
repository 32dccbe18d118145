"""Clients that trickle their requests cannot keep the real web process from answering Twilio."""

from __future__ import annotations

import os
import re
import shlex
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpline.cli import gunicorn_command
from helpline.infrastructure.constants import REQUEST_BODY_SECONDS, WEB_KEEPALIVE_SECONDS
from tests.factories import (
    AUTH_TOKEN,
    SECRET_KEY,
    WAIT_SECONDS,
    call_params,
    parse_voice,
    sign,
    sms_params,
    sms_replies,
    wait_until,
)
from tests.processes import HOST, free_port, serving

ROOT = Path(__file__).resolve().parent.parent
SLOW_CONNECTIONS = 16
# Seconds between two bytes from a slow connection.
TRICKLE_INTERVAL = 1.0
# Well under Twilio's 15 s: a webhook answers in milliseconds when nothing pins it.
ANSWER_WITHIN = 5.0
# The server cuts a slow connection off after the head's and the body's allowance.
CUT_OFF_WITHIN = WEB_KEEPALIVE_SECONDS + REQUEST_BODY_SECONDS + 5


def _procfile_line() -> str:
    return next(
        line.removeprefix("web:").strip()
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )


def _procfile_web(port: int) -> list[str]:
    """Return the Procfile's web command as a platform would run it, bound to loopback."""
    line = _procfile_line().replace("0.0.0.0:$PORT", f"{HOST}:{port}")
    command = shlex.split(line.replace("${WEB_CONCURRENCY:-2}", "2"))
    assert command[0] == "gunicorn"
    return [sys.executable, "-m", "gunicorn", *command[1:]]


def _helpline_web(port: int) -> list[str]:
    return [sys.executable, "-m", "helpline", "web", "--host", HOST, "--port", str(port)]


@pytest.fixture(params=["helpline web", "Procfile"])
def web(request, tmp_path: Path, redis_server: str) -> Iterator[int]:
    """Start the real web process (either way it is run) on a free port; yield the port."""
    port = free_port()
    command = _helpline_web(port) if request.param == "helpline web" else _procfile_web(port)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PUBLIC_URL", "PORT", "WEB_CONCURRENCY", "HELPLINE_ENV")
    }
    env.update(
        HELPLINE_DATA_DIR=str(tmp_path),
        REDIS_URL=redis_server,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        SECRET_KEY=SECRET_KEY,
    )
    with serving({request.param: command}, env, port, tmp_path):
        yield port


@dataclass
class Trickler:
    """Slow connections sending one byte a second: half the head, half the body."""

    port: int
    count: int
    sockets: list[socket.socket] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    answers: dict[int, bytes] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        for index in range(self.count):
            sock = socket.create_connection((HOST, self.port), timeout=WAIT_SECONDS)
            if index % 2:
                sock.sendall(self.head)  # the head whole, signature and all; the body trickles
            self.sockets.append(sock)
            self.sent.append(len(self.head) if index % 2 else 0)
            self.answers[index] = b""
            sock.setblocking(False)
        thread = threading.Thread(target=self._trickle, daemon=True)
        thread.start()
        return thread

    @property
    def head(self) -> bytes:
        return (
            f"POST /twilio/voice HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()

    def _trickle(self) -> None:
        request = self.head + b"A" * 1000
        while not self.stop.is_set():
            for index, sock in enumerate(self.sockets):
                if index in self.closed:
                    continue
                try:
                    while data := sock.recv(4096):
                        self.answers[index] += data
                    self.closed.add(index)  # an empty read: the server closed it
                except BlockingIOError:
                    try:
                        # Never the last byte: the request is never complete.
                        sock.send(request[self.sent[index] : self.sent[index] + 1])
                        self.sent[index] = min(self.sent[index] + 1, len(request) - 2)
                    except OSError:
                        self.closed.add(index)
                except OSError:
                    self.closed.add(index)
            self.stop.wait(TRICKLE_INTERVAL)

    def trickled_twice(self) -> bool:
        """Whether every connection has sent two bytes past what it opened with (or is shut)."""
        opened = len(self.head)
        return all(
            index in self.closed or sent - (opened if index % 2 else 0) >= 2
            for index, sent in enumerate(self.sent)
        )

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            sock.close()


def _post(port: int, path: str, form: dict[str, str]) -> tuple[float, str]:
    """POST a signed webhook; return (seconds taken, body)."""
    url = f"http://{HOST}:{port}{path}"
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"X-Twilio-Signature": sign(url, form)},
    )
    began = time.monotonic()
    # Twilio waits 15 s at most; so does this request.
    with urllib.request.urlopen(request, timeout=15) as response:
        body = response.read().decode()
    return time.monotonic() - began, body


def test_signed_webhooks_answer_at_once_while_slow_clients_trickle_and_are_cut_off(web):
    trickler = Trickler(web, SLOW_CONNECTIONS)
    thread = trickler.start()
    try:
        # Every slow connection has trickled twice: the server holds them all by now.
        wait_until(trickler.trickled_twice, WAIT_SECONDS, what="the slow connections to trickle")

        took, body = _post(web, "/twilio/voice", call_params())
        assert took < ANSWER_WITHIN, f"the call waited {took:.1f} s"
        assert "For overdose safety, press 1" in parse_voice(body).text
        took, body = _post(web, "/twilio/sms", sms_params("SAFE"))
        assert took < ANSWER_WITHIN, f"the text waited {took:.1f} s"
        assert sms_replies(body)[0].startswith("After any break")

        wait_until(
            lambda: len(trickler.closed) == SLOW_CONNECTIONS,
            CUT_OFF_WITHIN,
            what="the server to close every slow connection",
        )
        heads = [trickler.answers[i] for i in range(0, SLOW_CONNECTIONS, 2)]
        bodies = [trickler.answers[i] for i in range(1, SLOW_CONNECTIONS, 2)]
        # A head that never ends is dropped unanswered; a late body is answered 408.
        assert heads == [b""] * len(heads)
        assert all(re.match(rb"HTTP/1\.[01] 408 ", answer) for answer in bodies), bodies
    finally:
        trickler.close()
        thread.join(WAIT_SECONDS)


def test_procfile_runs_gunicorn_as_helpline_web_does():
    command = gunicorn_command("0.0.0.0:$PORT", "${WEB_CONCURRENCY:-2}")
    assert shlex.split(_procfile_line()) == command
    assert "gevent" in command
