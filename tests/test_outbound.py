"""Outbound texts and calls through the real twilio client, against the loopback stand-in."""

from __future__ import annotations

import pickle
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from twilio.rest import Client

from helpline.application.config import Settings
from helpline.infrastructure.errors import Failure, OutboundError
from helpline.infrastructure.outbound import classify, make_client, place_call, send_text
from tests.factories import CALLER, HELPLINE_NUMBER, WAIT_SECONDS, make_settings
from tests.twilio_api import TwilioApi

# The client's timeout where a test makes Twilio answer too late on purpose, so that it gives
# up quickly; every other client waits WAIT_SECONDS, so a busy machine cannot time it out.
CLIENT_TIMEOUT = 0.5
# Too long for E.164: Twilio refuses it with 21211 and names it in the error message.
INVALID_NUMBER = "+44770090012345678"
TWIML_URL = "https://helpline.example.org/twilio/voice/callback?id=42"
STATUS_URL = "https://helpline.example.org/twilio/sms/status"


@pytest.fixture
def outbound_settings(tmp_path, twilio_api: TwilioApi) -> Settings:
    return make_settings(tmp_path / "var", None, twilio_api_url=twilio_api.url)


@contextmanager
def open_client(settings: Settings, timeout: float = WAIT_SECONDS) -> Iterator[Client]:
    client = make_client(settings, timeout=timeout)
    try:
        yield client
    finally:
        client.http_client.session.close()


@pytest.fixture
def twilio(outbound_settings: Settings) -> Iterator[Client]:
    with open_client(outbound_settings) as client:
        yield client


def text(client: Client, to: str = CALLER, body: str = "You are in the queue.") -> str:
    return send_text(client, sender=HELPLINE_NUMBER, to=to, body=body)


def failure_of(send: Callable[[], object]) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        send()
    return caught.value


def assert_no_trace_of(number: str, error: OutboundError) -> None:
    digits = number.lstrip("+")[2:]  # without + and country code, so every spelling is caught
    shown = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for shown_text in shown:
        assert digits not in shown_text
    assert error.__cause__ is None
    assert error.__context__ is None


def test_send_text_posts_to_from_and_body_and_returns_the_sid_twilio_gave(twilio, twilio_api):
    sid = text(twilio, body="Carry naloxone. Don't use alone.")

    [sent] = twilio_api.messages()
    assert sid == sent.sid
    assert sid.startswith("SM") and len(sid) == 34
    assert sent.form == {
        "To": CALLER,
        "From": HELPLINE_NUMBER,
        "Body": "Carry naloxone. Don't use alone.",
    }


def test_send_text_passes_the_status_callback(twilio, twilio_api):
    send_text(twilio, sender=HELPLINE_NUMBER, to=CALLER, body="Hi", status_callback=STATUS_URL)

    [sent] = twilio_api.messages()
    assert sent.form["StatusCallback"] == STATUS_URL


def test_place_call_posts_the_twiml_url_and_numbers_and_returns_the_call_sid(twilio, twilio_api):
    sid = place_call(twilio, sender=HELPLINE_NUMBER, to=CALLER, url=TWIML_URL)

    [placed] = twilio_api.calls()
    assert sid == placed.sid
    assert sid.startswith("CA") and len(sid) == 34
    assert placed.form == {"To": CALLER, "From": HELPLINE_NUMBER, "Url": TWIML_URL}
    assert twilio_api.messages() == []


def test_place_call_passes_the_status_callback(twilio, twilio_api):
    status_url = "https://helpline.example.org/twilio/voice/status"
    place_call(twilio, sender=HELPLINE_NUMBER, to=CALLER, url=TWIML_URL, status_callback=status_url)

    [placed] = twilio_api.calls()
    assert placed.form["StatusCallback"] == status_url


def test_wrong_auth_token_is_a_permanent_error(outbound_settings, twilio_api):
    settings = outbound_settings.with_overrides(twilio_auth_token="not-the-token")
    with open_client(settings) as client:
        error = failure_of(lambda: text(client))

    assert (error.kind, error.status, error.code) == (Failure.PERMANENT, 401, 20003)
    assert not error.retryable
    assert [r.status for r in twilio_api.received()] == [401]
    assert twilio_api.messages() == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_rate_limits_are_retryable_and_not_retried_underneath(
    twilio, twilio_api, status
):
    twilio_api.fail_next(status=status)

    error = failure_of(lambda: text(twilio))

    assert (error.kind, error.status) == (Failure.RETRY, status)
    assert error.retryable
    assert [r.status for r in twilio_api.received()] == [status]  # one try, no hidden retries
    assert text(twilio) == twilio_api.messages()[0].sid  # the next attempt goes through


def test_an_answer_slower_than_the_timeout_is_retryable(outbound_settings, twilio_api):
    twilio_api.delay_next(WAIT_SECONDS)  # cut short when the stand-in stops

    started = time.monotonic()
    with open_client(outbound_settings, timeout=CLIENT_TIMEOUT) as impatient:
        error = failure_of(lambda: text(impatient))
    elapsed = time.monotonic() - started

    assert (error.kind, error.status, error.code) == (Failure.RETRY, None, None)
    assert elapsed < WAIT_SECONDS  # it gave up; it did not wait for the answer
    # Twilio may still have taken it: a timeout means "unknown", not "not sent".
    assert len(twilio_api.wait_for(1)) == 1


def test_no_answer_at_all_is_retryable(outbound_settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = outbound_settings.with_overrides(twilio_api_url=f"http://127.0.0.1:{port}")
    with open_client(settings) as client:
        error = failure_of(lambda: text(client))

    assert (error.kind, error.status, error.code) == (Failure.RETRY, None, None)


def test_a_recipient_who_replied_stop_is_opted_out_and_others_still_get_texts(twilio, twilio_api):
    twilio_api.fail_for(CALLER, 21610)

    error = failure_of(lambda: text(twilio))

    assert (error.kind, error.status, error.code) == (Failure.OPTED_OUT, 400, 21610)
    assert not error.retryable
    other = "+447700900456"
    text(twilio, to=other)
    assert [m.form["To"] for m in twilio_api.messages()] == [other]


@pytest.mark.parametrize("kind", ["message", "call"])
def test_an_invalid_number_is_a_permanent_error(twilio, twilio_api, kind):
    if kind == "message":
        error = failure_of(lambda: text(twilio, to=INVALID_NUMBER))
    else:
        error = failure_of(
            lambda: place_call(twilio, sender=HELPLINE_NUMBER, to=INVALID_NUMBER, url=TWIML_URL)
        )

    assert (error.kind, error.status, error.code) == (Failure.PERMANENT, 400, 21211)
    assert [r.kind for r in twilio_api.received()] == [kind]


def test_an_invalid_number_is_not_in_the_error_though_twilio_named_it(twilio, twilio_api):
    error = failure_of(lambda: text(twilio, to=INVALID_NUMBER))

    [refused] = twilio_api.received()
    assert INVALID_NUMBER in refused.response["message"]  # what the twilio client was given
    assert_no_trace_of(INVALID_NUMBER, error)
    assert str(error) == "Twilio REST request failed: permanent (HTTP 400, code 21211)"


@pytest.mark.parametrize(
    ("prepare", "timeout"),
    [
        pytest.param(lambda api: api.fail_for(CALLER, 21610), WAIT_SECONDS, id="opted-out"),
        pytest.param(
            lambda api: api.fail_for(CALLER, 21211, message=f"The 'To' number {CALLER} is bad"),
            WAIT_SECONDS,
            id="invalid",
        ),
        pytest.param(lambda api: api.fail_next(status=503), WAIT_SECONDS, id="unavailable"),
        pytest.param(lambda api: api.delay_next(WAIT_SECONDS), CLIENT_TIMEOUT, id="timeout"),
    ],
)
@pytest.mark.parametrize("kind", ["message", "call"])
def test_no_failure_carries_the_number(outbound_settings, twilio_api, prepare, timeout, kind):
    prepare(twilio_api)

    with open_client(outbound_settings, timeout=timeout) as twilio:
        if kind == "message":
            error = failure_of(lambda: text(twilio))
        else:
            error = failure_of(
                lambda: place_call(twilio, sender=HELPLINE_NUMBER, to=CALLER, url=TWIML_URL)
            )

    assert_no_trace_of(CALLER, error)


def test_twilio_region_and_edge_in_the_environment_do_not_move_requests(
    twilio_api, outbound_settings, monkeypatch
):
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    with open_client(outbound_settings) as client:
        sid = text(client)

    assert [m.sid for m in twilio_api.messages()] == [sid]


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, 21610, Failure.OPTED_OUT),
        (400, 21211, Failure.PERMANENT),
        (401, 20003, Failure.PERMANENT),
        (404, 20404, Failure.PERMANENT),
        (408, None, Failure.RETRY),
        (429, 20429, Failure.RETRY),
        (500, 20500, Failure.RETRY),
        (502, None, Failure.RETRY),
        (None, None, Failure.RETRY),
    ],
)
def test_classify(status, code, kind):
    assert classify(status, code) is kind


def test_an_outbound_error_survives_a_round_trip_through_pickle():
    error = pickle.loads(pickle.dumps(OutboundError(Failure.OPTED_OUT, 400, 21610)))

    assert (error.kind, error.status, error.code) == (Failure.OPTED_OUT, 400, 21610)
    assert str(error) == "Twilio REST request failed: opted_out (HTTP 400, code 21610)"
