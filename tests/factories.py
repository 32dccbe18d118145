"""Factory functions and helpers shared by the tests, with sensible defaults."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from twilio.request_validator import RequestValidator

from helpline.application.config import Settings
from helpline.application.jobs import RESULT_TTL
from helpline.conversation.channels import texting_channel
from workers import jobs
from workers.main import queues

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
SECRET_KEY = "test-secret-key-" + "k" * 48
CALLER = "+447700900123"  # Ofcom drama range: never a real subscriber, nor one we can call
USABLE_CALLER = "+12025550107"  # reserved for fiction, yet a number phonenumbers accepts
HELPLINE_NUMBER = "+447700900999"
# Longest a test waits for what it expects (a text sent, a page updated, a thread done).
# Generous, so a busy machine does not fail a test: a passing test stops at once.
WAIT_SECONDS = 30.0
# ...and for a process to start, stop or finish (imports, forks), which a busy machine
# slows most: with tests running in parallel, a command's start-up shares the cores too.
PROCESS_WAIT_SECONDS = 120.0


TEST_PASSWORD_METHOD = "pbkdf2:sha256:1000"


# Rate limits high enough never to be met by a test's scripted callers.
UNLIMITED = 1_000_000


def make_settings(data_dir: Path, redis_url: str | None, **overrides: Any) -> Settings:
    """Return test settings; pass twilio_api_url=twilio_api.url to send to the stand-in."""
    values: dict[str, Any] = dict(
        env="development",
        data_dir=data_dir,
        redis_url=redis_url,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        secret_key=SECRET_KEY,
        phone_number=HELPLINE_NUMBER,
        # A cheap hash: console tests log in often; test_cli_data checks the real one.
        password_method=TEST_PASSWORD_METHOD,
        # Tests text fast from a few numbers; tests/test_limits.py sets the limits it tests.
        texts_per_minute=UNLIMITED,
        calls_per_hour=UNLIMITED,
        # Report counts wait for a write of the test's own: no timer sends them later,
        # into another test's Redis.
        report_flush_seconds=0,
    )
    values.update(overrides)
    return Settings(**values)


def run_helpline(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the helpline command as an operator would; return what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "helpline", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=PROCESS_WAIT_SECONDS,
    )


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first old with new in a copied flows file; old must be there."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def twilio_post(
    client: FlaskClient,
    path: str,
    params: dict[str, str],
    *,
    token: str = AUTH_TOKEN,
    base: str = "http://localhost",
):  # type: ignore[no-untyped-def]
    """POST as Twilio does: form-encoded and signed with the auth token."""
    signature = sign(base + path, params, token)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def sms_params(body: str, sender: str = CALLER, **extra: str) -> dict[str, str]:
    """A text as Twilio posts it; a WhatsApp sender ("whatsapp:+...") writes to our
    WhatsApp address."""
    channel = texting_channel(sender)
    params = {
        "From": sender,
        "To": channel.address(HELPLINE_NUMBER),
        "Body": body,
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": ACCOUNT_SID,
        "NumMedia": "0",
    }
    params.update(extra)
    return params


def call_params(call_sid: str | None = None, sender: str = CALLER, **extra: str) -> dict[str, str]:
    params = {
        "CallSid": call_sid or "CA" + secrets.token_hex(16),
        "From": sender,
        "To": HELPLINE_NUMBER,
        "CallStatus": "in-progress",
        "AccountSid": ACCOUNT_SID,
    }
    params.update(extra)
    return params


@dataclass
class VoiceStep:
    """A parsed voice answer: what is said, whether it gathers, where it goes next."""

    says: list[str]
    gather: ET.Element | None
    hangup: bool
    locales: list[str] = field(default_factory=list)  # each Say's voice, in order

    @property
    def action(self) -> str:
        assert self.gather is not None, "this step does not wait for input"
        return self.gather.attrib["action"]

    @property
    def text(self) -> str:
        return " ".join(self.says)


def parse_voice(xml: str) -> VoiceStep:
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    return VoiceStep(
        says=[say.text or "" for say in root.iter("Say")],
        gather=root.find("Gather"),
        hangup=root.find("Hangup") is not None,
        locales=[say.attrib.get("language", "") for say in root.iter("Say")],
    )


def sms_replies(xml: str) -> list[str]:
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    return ["".join(message.itertext()) for message in root.iter("Message")]


class Call:
    """One phone call: the same CallSid and caller ID on every step, as Twilio sends."""

    def __init__(self, client: FlaskClient, sender: str = USABLE_CALLER):
        self.client = client
        self.params = call_params(sender=sender)
        self.step = self._post("/twilio/voice", {})

    def _post(self, path: str, extra: dict[str, str]) -> VoiceStep:
        response = twilio_post(self.client, path, {**self.params, **extra})
        assert response.status_code == 200
        return parse_voice(response.get_data(as_text=True))

    def press(self, *keys: str) -> VoiceStep:
        for key in keys:
            self.step = self._post(self.step.action, {"Digits": key})
        return self.step

    def say(self, words: str) -> VoiceStep:
        self.step = self._post(self.step.action, {"SpeechResult": words})
        return self.step


def text(client: FlaskClient, body: str, sender: str = USABLE_CALLER) -> str:
    """Send one signed text; return the reply as the texter reads it (one string)."""
    response = twilio_post(client, "/twilio/sms", sms_params(body, sender=sender))
    assert response.status_code == 200
    return "\n".join(sms_replies(response.get_data(as_text=True)))


class FakeClock:
    """A clock tests move by hand: time.time()'s shape, no sleeping."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(check: Callable[[], bool], timeout: float = WAIT_SECONDS, what: str = "") -> None:
    """Return as soon as check() is true; fail if it is still false after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(0.05)


def join(threads: Iterable[threading.Thread], timeout: float = WAIT_SECONDS) -> None:
    """Wait for every thread to finish; fail, not hang, if one is still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), f"{thread.name} still running after {timeout:.0f} s"


def child_pids(pid: int) -> list[int]:
    """Return the ids of pid's child processes (a worker's own, a supervisor's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


# Area codes whose 555-0100 to 555-0199 are reserved for fiction, as everywhere in the US.
_FICTION_AREAS = ("202", "303", "415")


def callback_number(n: int) -> str:
    """Return the n-th (0-299) of the US numbers reserved for fiction, valid to phonenumbers."""
    area, line = divmod(n, 100)
    return f"+1{_FICTION_AREAS[area]}555{100 + line:04d}"


def _values(client: Any, key: bytes) -> list[bytes]:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key)]
    if kind == "hash":
        return [part for pair in client.hgetall(key).items() for part in pair]
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "stream":
        return [
            part for _, fields in client.xrange(key) for pair in fields.items() for part in pair
        ]
    return []


def scan_for_numbers(client: Any, numbers: list[str]) -> list[str]:
    """Return every Redis key whose name or value holds one of numbers in plain text.

    A number counts as present in any common form: E.164, without the plus, or its
    national significant digits (the last nine).
    """
    needles = set()
    for number in numbers:
        digits = number.lstrip("+")
        needles.update({number.encode(), digits.encode(), digits[-9:].encode()})
    return scan_for(client, needles)


def scan_for(client: Any, needles: Iterable[bytes]) -> list[str]:
    """Return every Redis key whose name or value holds one of needles (bytes, exactly)."""
    wanted = set(needles)
    found = []
    for key in client.scan_iter(count=1000):
        haystack = [key, *(value for value in _values(client, key) if value)]
        if any(needle in item for item in haystack for needle in wanted):
            found.append(key.decode(errors="replace"))
    return found


@contextmanager
def worker_environment(
    monkeypatch: pytest.MonkeyPatch,
    *,
    data_dir: Path,
    redis_url: str,
    twilio_api_url: str,
    **extra: str,
) -> Iterator[dict[str, str]]:
    """Point this process's jobs at a test's Redis and Twilio stand-in, as a worker's are.

    Yields the whole environment, for worker processes the test starts itself.
    """
    env = {
        "HELPLINE_DATA_DIR": str(data_dir),
        "REDIS_URL": redis_url,
        "TWILIO_API_URL": twilio_api_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "HELPLINE_PHONE_NUMBER": HELPLINE_NUMBER,
        "HELPLINE_TEXTS_PER_MINUTE": str(UNLIMITED),
        "HELPLINE_CALLS_PER_HOUR": str(UNLIMITED),
        **extra,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    jobs.context.cache_clear()  # the jobs read their settings once per process
    try:
        yield {**os.environ, **env}
    finally:
        jobs.context.cache_clear()


def work(ctx: jobs.Context) -> None:
    """Run every queued job (and every retry already due) in a real RQ worker, here."""
    worker = SimpleWorker(
        queues(ctx.client),
        connection=ctx.client,
        serializer=JSONSerializer,
        default_result_ttl=RESULT_TTL,
    )
    worker.work(burst=True, with_scheduler=True)
