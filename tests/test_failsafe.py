"""Whatever fails inside the service, a caller still gets a useful answer, fast.

Redis stopped mid-run, a Redis that accepts connections and never answers, and a bug
that raises inside a webhook: each still gets a 200 with TwiML within 2 seconds, with
the emergency number and the "don't use alone" advice when the normal answer is lost.
The logs written meanwhile never hold the caller's number or what they wrote.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient

from helpline import create_app
from helpline.conversation.channels import TEXTING, Channel
from helpline.conversation.gsm import segments
from helpline.infrastructure import embedded
from helpline.infrastructure.constants import SMS_MAX_SEGMENTS
from helpline.infrastructure.logs import MaskingJsonFormatter, configure_logging
from tests.factories import (
    CALLER,
    WAIT_SECONDS,
    call_params,
    make_settings,
    parse_voice,
    sms_params,
    sms_replies,
    twilio_post,
    wait_until,
)

# Every answer must reach Twilio well inside its 15 s timeout; we promise far less.
ANSWER_WITHIN_SECONDS = 2.0
CALLER_DIGITS = "7700900123"  # CALLER without +44: how it would show up in a log
assert CALLER.endswith(CALLER_DIGITS)
# What a caller wrote or said; none of it may reach a log.
PRIVATE_TEXT = "I relapsed last night and Im scared"
CRISIS_TEXT = "he's not breathing"

SAFE_REPLY = "After any break"  # sms.safe_break
SMS_EMERGENCY = "call 999 NOW"  # sms.crisis
VOICE_EMERGENCY = "call 9 9 9"  # 999 as the voice says it


# -- helpers -------------------------------------------------------------------------------


def answer(client: FlaskClient, path: str, params: dict[str, str]) -> str:
    """POST a signed webhook; check it is a fast 200 with a <Response>; return the body."""
    started = time.perf_counter()
    response = twilio_post(client, path, params)
    elapsed = time.perf_counter() - started
    body = response.get_data(as_text=True)
    assert response.status_code == 200, (response.status_code, body)
    assert elapsed < ANSWER_WITHIN_SECONDS, f"{path} took {elapsed:.2f}s"
    assert response.mimetype == "text/xml"
    assert ET.fromstring(body).tag == "Response"
    return body


def sms_reply(client: FlaskClient, text: str, sender: str = CALLER) -> str:
    (reply,) = sms_replies(answer(client, "/twilio/sms", sms_params(text, sender=sender)))
    return reply


def assert_sms_failsafe(body: str) -> None:
    (reply,) = sms_replies(body)
    assert "Call 999 now" in reply
    assert "Don't use alone" in reply
    assert segments(reply) <= SMS_MAX_SEGMENTS


def assert_voice_failsafe(
    body: str, emergency: str = VOICE_EMERGENCY, alone: str = "don't use alone"
) -> None:
    step = parse_voice(body)
    assert emergency in step.text
    assert alone in step.text
    assert step.hangup and step.gather is None


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def rendered(records: list[logging.LogRecord]) -> str:
    """Each record's message and extra fields, as any log handler would see them."""
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.extend(
            str(value) for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        )
    return "\n".join(parts)


def assert_nothing_private(text: str, *private: str) -> None:
    assert CALLER_DIGITS not in text
    assert CALLER_DIGITS[-7:] not in text  # not even the local part
    for value in private:
        assert value not in text


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the service's own JSON handler on stderr writes during the test.

    configure_logging binds its handler to the sys.stderr of the first app created in the
    session, so capsys would not see it; point that very handler at a buffer instead.
    """
    configure_logging()
    (handler,) = [
        h for h in logging.getLogger().handlers if isinstance(h.formatter, MaskingJsonFormatter)
    ]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous or io.StringIO())


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# -- Redis stopped mid-run -----------------------------------------------------------------


@dataclass
class Outage:
    client: FlaskClient
    redis_dir: Path


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """An app on its own embedded Redis: a text works, then Redis is stopped for good."""
    root = tmp_path_factory.mktemp("outage")
    redis_dir = root / "r"
    url, _ = embedded.ensure_running(redis_dir)
    app = create_app(make_settings(root / "var", url))
    client = app.test_client()
    direct = redis_py.Redis.from_url(url)
    try:
        assert sms_reply(client, "SAFE").startswith(SAFE_REPLY)
        assert direct.keys("helpline:sms:conv:*"), "while Redis is up the conversation is kept"
    finally:
        direct.close()
    embedded.stop(redis_dir)
    assert not embedded.is_running(redis_dir)
    yield Outage(client, redis_dir)
    app.extensions["redis"].close()


@pytest.fixture
def down(outage: Outage, monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    """The outage app with its breaker off: every request really tries the dead Redis."""
    monkeypatch.setattr(
        outage.client.application.extensions["helpline"].store, "breaker_seconds", 0
    )
    assert not embedded.is_running(outage.redis_dir)
    return outage.client


def test_healthz_stays_ok_and_readyz_says_redis_is_down_while_it_is_down(down):
    # Liveness: the process answers callers (with the fail-safe), so nothing should restart it.
    response = down.get("/healthz")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "ok\n")
    ready = down.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["redis"] == "down"


@pytest.fixture(params=TEXTING, ids=lambda channel: channel.name)
def texting(request: pytest.FixtureRequest) -> Channel:
    return request.param


def test_safe_text_still_gets_the_safe_reply_while_redis_is_down(down, texting):
    assert sms_reply(down, "SAFE", texting.address(CALLER)).startswith(SAFE_REPLY)


def test_crisis_text_gets_the_emergency_reply_with_999_while_redis_is_down(down, texting):
    reply = sms_reply(down, CRISIS_TEXT, texting.address(CALLER))
    assert SMS_EMERGENCY in reply
    assert segments(reply) <= SMS_MAX_SEGMENTS


def test_first_text_from_a_new_number_gets_the_menu_while_redis_is_down(down, texting):
    reply = sms_reply(down, "hello there", sender=texting.address("+447700900777"))
    assert reply.startswith("Helpline:")
    assert "Call 999 now" in reply


def test_a_check_in_is_said_to_be_unavailable_while_redis_is_down(down):
    reply = sms_reply(down, "CHECKIN", sender="+12025550107")  # a number we could call
    assert "check-in calls aren't available right now" in reply
    assert "don't use alone" in reply
    assert "Call 999" in reply
    assert segments(reply) <= SMS_MAX_SEGMENTS


def test_incoming_call_gets_the_normal_greeting_while_redis_is_down(down):
    step = parse_voice(answer(down, "/twilio/voice", call_params()))
    assert step.says[0].startswith("Hello, and thank you for calling the Helpline")
    assert VOICE_EMERGENCY in step.says[1]
    assert step.gather is not None


def test_voice_menu_key_press_works_while_redis_is_down(down):
    path = "/twilio/voice/step?node=main&lang=en&r=0"
    step = parse_voice(answer(down, path, call_params(Digits="1")))
    assert step.text.startswith("Overdose safety.")
    assert step.gather is not None


def test_spoken_crisis_on_a_call_gets_the_emergency_advice_while_redis_is_down(down):
    path = "/twilio/voice/step?node=main&lang=en&r=0"
    step = parse_voice(answer(down, path, call_params(SpeechResult=CRISIS_TEXT)))
    assert VOICE_EMERGENCY in step.says[0]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/twilio/voice/status", {"CallStatus": "completed"}),
        ("/twilio/sms/status", {"MessageStatus": "delivered"}),
    ],
    ids=["voice", "sms"],
)
def test_status_callbacks_answer_200_while_redis_is_down(down, path, params):
    body = answer(down, path, call_params(**params))
    assert list(ET.fromstring(body)) == []  # an empty <Response/>: nothing is sent


def test_logs_during_the_outage_hold_no_number_and_no_message_text(down, caplog, json_log):
    caplog.set_level(logging.DEBUG)
    step = "/twilio/voice/step?node=main&lang=en&r=0"
    answer(down, "/twilio/sms", sms_params(PRIVATE_TEXT))
    answer(down, "/twilio/sms", sms_params(CRISIS_TEXT))
    answer(down, "/twilio/voice", call_params())
    answer(down, step, call_params(SpeechResult=PRIVATE_TEXT))
    answer(down, "/twilio/sms/status", sms_params("", MessageStatus="delivered"))

    written = json_log.getvalue()
    # The outage is reported (so the check below looks at real log lines) ...
    errors = [e for e in json_lines(json_log) if e["level"] == "error"]
    assert errors and all(e["logger"] == "helpline.infrastructure.store" for e in errors)
    assert "helpline.infrastructure.store" in {r.name for r in caplog.records}
    # ... and nothing in them identifies the caller or repeats what they wrote.
    assert_nothing_private(written, PRIVATE_TEXT, CRISIS_TEXT, "not breathing")
    assert_nothing_private(rendered(caplog.records), PRIVATE_TEXT, CRISIS_TEXT, "not breathing")


def test_conversation_is_remembered_again_once_redis_is_back(tmp_path, monkeypatch):
    redis_dir = tmp_path / "r"
    url, _ = embedded.ensure_running(redis_dir)
    app = create_app(make_settings(tmp_path / "var", url, redis_breaker_seconds=0.3))
    client = app.test_client()
    try:
        assert sms_reply(client, "SAFE").startswith(SAFE_REPLY)
        embedded.stop(redis_dir)

        # Down: every text is answered as the first of a conversation ("2" = main menu 2).
        assert sms_reply(client, "FAMILY").startswith("Pick a calm")
        assert sms_reply(client, "2").startswith("Dependence is a medical problem")

        url_again, started = embedded.ensure_running(redis_dir)
        assert started and url_again == url
        store = app.extensions["helpline"].store
        wait_until(lambda: store.available, what="the breaker to let Redis be tried again")

        # Back: "2" now follows on from FAMILY, so the state was stored and read again.
        assert sms_reply(client, "FAMILY").startswith("Pick a calm")
        assert sms_reply(client, "2").startswith("Keep naloxone at home")
        direct = redis_py.Redis.from_url(url)
        try:
            (key,) = direct.keys("helpline:sms:conv:*")
            assert json.loads(direct.get(key))["node"] == "family_safety"
        finally:
            direct.close()
    finally:
        app.extensions["redis"].close()
        embedded.stop(redis_dir)


# -- a Redis that accepts connections and never answers ------------------------------------


@pytest.fixture
def silent_redis_url() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=serve, name="silent-redis", daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        done.set()
        thread.join(timeout=WAIT_SECONDS)
        server.close()
        for conn in accepted:
            conn.close()


@pytest.fixture
def hung(silent_redis_url: str, tmp_path: Path) -> Iterator[FlaskClient]:
    # Breaker off, so every Redis call in every request waits out its own timeout.
    app = create_app(make_settings(tmp_path / "var", silent_redis_url, redis_breaker_seconds=0))
    yield app.test_client()
    app.extensions["redis"].close()


def test_safe_text_is_answered_within_2s_when_redis_never_replies(hung):
    assert sms_reply(hung, "SAFE").startswith(SAFE_REPLY)


def test_crisis_text_is_answered_within_2s_when_redis_never_replies(hung):
    assert SMS_EMERGENCY in sms_reply(hung, CRISIS_TEXT)


def test_call_and_status_callbacks_are_answered_within_2s_when_redis_never_replies(hung):
    assert VOICE_EMERGENCY in parse_voice(answer(hung, "/twilio/voice", call_params())).says[1]
    answer(hung, "/twilio/voice/status", call_params(CallStatus="completed"))
    answer(hung, "/twilio/sms/status", sms_params("", MessageStatus="delivered"))


# -- a bug inside a webhook ----------------------------------------------------------------


class BrokenEngine:
    """A flow engine with a bug: every step raises, quoting the input it was given."""

    def __init__(self, real: Any):
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)  # flow, content, restore... as before

    def start(self, lang: str | None = None) -> Any:
        raise RuntimeError(f"cannot start a call in {lang!r}")

    def resume(self, state: Any, reply: Any, **options: Any) -> Any:
        raise RuntimeError(f"no way forward from {state!r} for {reply!r}")


class BrokenConversations:
    """SMS handling with a bug whose exception message holds the number and the text."""

    def answer(self, text: Any) -> str:
        raise RuntimeError(f"could not answer {text.sender}: {text.body}")


class BrokenStore:
    """A store that raises instead of answering a default (a bug in Store itself)."""

    def attempt(self, what: str, call: Callable[..., Any], default: Any) -> Any:
        raise RuntimeError(f"store broke during {what}")


def _break_sms_engine(app: Flask) -> None:
    services = app.extensions["helpline"]
    services.texts.engine = BrokenEngine(services.texts.engine)


def _break_sms(app: Flask) -> None:
    app.extensions["helpline"].texts = BrokenConversations()


def _break_voice(app: Flask) -> None:
    services = app.extensions["helpline"]
    services.voice = BrokenEngine(services.voice)


def _break_store(app: Flask) -> None:
    app.extensions["helpline"].store = BrokenStore()
    app.extensions["helpline"].texts.store = BrokenStore()


FAILURES = [
    # (id, break it, path, params, check the answer)
    (
        "sms-engine",
        _break_sms_engine,
        "/twilio/sms",
        lambda: sms_params(PRIVATE_TEXT),
        assert_sms_failsafe,
    ),
    (
        "sms-conversations",
        _break_sms,
        "/twilio/sms",
        lambda: sms_params(PRIVATE_TEXT),
        assert_sms_failsafe,
    ),
    (
        "sms-store",
        _break_store,
        "/twilio/sms",
        lambda: sms_params(PRIVATE_TEXT),
        assert_sms_failsafe,
    ),
    ("voice-start", _break_voice, "/twilio/voice", call_params, assert_voice_failsafe),
    (
        "voice-step",
        _break_voice,
        "/twilio/voice/step?node=main&lang=en&r=0",
        lambda: call_params(SpeechResult=PRIVATE_TEXT),
        assert_voice_failsafe,
    ),
    (
        "voice-step-es",
        _break_voice,
        "/twilio/voice/step?node=main&lang=es&r=0",
        lambda: call_params(SpeechResult=PRIVATE_TEXT),
        lambda body: assert_voice_failsafe(body, "llama al 9 9 9", "no consumas a solas"),
    ),
]


@pytest.mark.parametrize(
    ("breaker", "path", "make_params", "check"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
def test_a_webhook_that_raises_answers_the_failsafe_and_logs_no_number_or_text(
    app, caplog, json_log, breaker, path, make_params, check
):
    caplog.set_level(logging.DEBUG)
    breaker(app)
    check(answer(app.test_client(), path, make_params()))

    (failure,) = [e for e in json_lines(json_log) if e["level"] == "error"]
    assert failure["msg"] == "webhook failed; answered with the fail-safe"
    assert failure["error"] == "RuntimeError"
    assert "Traceback" in failure["exc"]  # the stack is kept for whoever debugs it
    assert_nothing_private(json_log.getvalue(), PRIVATE_TEXT)
    assert_nothing_private(rendered(caplog.records), PRIVATE_TEXT)


@pytest.mark.parametrize(
    "path", ["/twilio/voice/status", "/twilio/sms/status"], ids=["voice", "sms"]
)
def test_status_callback_answers_200_even_when_the_store_raises(app, path):
    _break_store(app)
    answer(app.test_client(), path, call_params(CallStatus="completed", MessageStatus="sent"))


def test_voice_fallback_answers_the_failsafe_with_999_and_dont_use_alone(client, json_log):
    body = answer(client, "/twilio/voice/fallback", call_params(ErrorCode="11200"))
    assert_voice_failsafe(body)
    (entry,) = json_lines(json_log)
    assert entry["msg"] == "voice fallback used" and entry["error_code"] == "11200"
    assert_nothing_private(json_log.getvalue())


def test_sms_fallback_answers_the_failsafe_with_999_and_dont_use_alone(client, json_log):
    body = answer(client, "/twilio/sms/fallback", sms_params(PRIVATE_TEXT, ErrorCode="12300"))
    assert_sms_failsafe(body)
    (entry,) = json_lines(json_log)
    assert entry["msg"] == "sms fallback used" and entry["error_code"] == "12300"
    assert_nothing_private(json_log.getvalue(), PRIVATE_TEXT)
