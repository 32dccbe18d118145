"""Only requests signed by Twilio, for exactly the URL and params it sent, are answered.

Every /twilio/* route refuses (403) a request whose X-Twilio-Signature is missing, made
with another token, or made for other params or another URL, and a refused request
changes nothing in Redis. Behind a proxy the signature is checked against PUBLIC_URL, or
against the X-Forwarded-* address when PUBLIC_URL is not set and the proxy is trusted.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_py
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from helpline import create_app
from helpline.infrastructure.proxies import parse_networks
from helpline.infrastructure.signatures import WebhookValidator
from tests.factories import (
    AUTH_TOKEN,
    call_params,
    make_settings,
    sign,
    sms_params,
)

LOCAL = "http://localhost"
PUBLIC = "https://helpline.example.org"
TUNNEL = "https://tunnel.example.net"


def _sms_status_params() -> dict[str, str]:
    params = sms_params("")
    del params["Body"]
    params.update(MessageStatus="delivered", SmsStatus="delivered")
    return params


@dataclass(frozen=True)
class Route:
    path: str  # as Twilio requests it, query included
    params: Callable[[], dict[str, str]]
    # The same route as a tampered action URL: another query than the one signed.
    other_query: str

    def __str__(self) -> str:
        return self.path


ROUTES = [
    Route("/twilio/voice", call_params, "/twilio/voice?lang=es"),
    Route(
        "/twilio/voice/step?node=main&lang=en&r=0",
        lambda: call_params(Digits="1"),
        "/twilio/voice/step?node=emergency&lang=en&r=0",
    ),
    Route(
        "/twilio/voice/status",
        lambda: call_params(CallStatus="completed", CallDuration="42"),
        "/twilio/voice/status?lang=es",
    ),
    Route(
        "/twilio/voice/fallback",
        lambda: call_params(ErrorCode="11200"),
        "/twilio/voice/fallback?lang=es",
    ),
    Route("/twilio/sms", lambda: sms_params("SAFE"), "/twilio/sms?lang=es"),
    Route("/twilio/sms/status", _sms_status_params, "/twilio/sms/status?lang=es"),
    Route(
        "/twilio/sms/fallback",
        lambda: sms_params("SAFE", ErrorCode="11200"),
        "/twilio/sms/fallback?lang=es",
    ),
]
routes = pytest.mark.parametrize("route", ROUTES, ids=str)


def post(
    client: FlaskClient,
    path: str,
    params: dict[str, str],
    signature: str | None,
    headers: dict[str, str] | None = None,
):  # type: ignore[no-untyped-def]
    """POST form params to path with the given signature header (None: no header)."""
    all_headers = dict(headers or {})
    if signature is not None:
        all_headers["X-Twilio-Signature"] = signature
    return client.post(path, data=params, headers=all_headers)


def assert_answered(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.get_data(as_text=True)
    assert ET.fromstring(response.get_data(as_text=True)).tag == "Response"


# Keys only a worker process writes (its registration, the scheduler's locks): a worker
# that another test started, in its last seconds, may still be beating in this Redis.
WORKER_KEYS = (b"rq:scheduler-lock:", b"rq:workers", b"rq:worker:")


def written(redis: redis_py.Redis) -> list[bytes]:
    """Every key a request could have written (all but the workers' own bookkeeping)."""
    return sorted(key for key in redis.keys("*") if not key.startswith(WORKER_KEYS))


def assert_refused(response, redis: redis_py.Redis) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 403
    assert b"<Response" not in response.get_data()
    # A forged request must not move a conversation, opt anyone out, queue a job or skew
    # the stats.
    assert written(redis) == []


# -- refused -------------------------------------------------------------------------------


@routes
def test_request_without_signature_header_is_refused(client, redis, route):
    response = post(client, route.path, route.params(), signature=None)
    assert_refused(response, redis)


@routes
def test_request_with_empty_signature_header_is_refused(client, redis, route):
    response = post(client, route.path, route.params(), signature="")
    assert_refused(response, redis)


@routes
def test_request_signed_with_another_auth_token_is_refused(client, redis, route):
    params = route.params()
    signature = sign(LOCAL + route.path, params, token="not-" + AUTH_TOKEN)
    assert_refused(post(client, route.path, params, signature), redis)


@routes
def test_request_with_a_param_changed_after_signing_is_refused(client, redis, route):
    params = route.params()
    signature = sign(LOCAL + route.path, params)
    params["From"] = "+447700900456"  # someone else's number
    assert_refused(post(client, route.path, params, signature), redis)


@routes
def test_request_with_a_param_added_after_signing_is_refused(client, redis, route):
    params = route.params()
    signature = sign(LOCAL + route.path, params)
    params["Injected"] = "yes"
    assert_refused(post(client, route.path, params, signature), redis)


@routes
def test_request_with_a_param_dropped_after_signing_is_refused(client, redis, route):
    params = route.params()
    signature = sign(LOCAL + route.path, params)
    del params["AccountSid"]
    assert_refused(post(client, route.path, params, signature), redis)


@routes
def test_request_signed_for_another_path_is_refused(client, redis, route):
    params = route.params()
    signature = sign(LOCAL + "/twilio/elsewhere", params)
    assert_refused(post(client, route.path, params, signature), redis)


@routes
def test_request_signed_for_another_query_is_refused(client, redis, route):
    params = route.params()
    signature = sign(LOCAL + route.other_query, params)
    assert_refused(post(client, route.path, params, signature), redis)


@routes
def test_request_whose_query_was_changed_after_signing_is_refused(client, redis, route):
    params = route.params()
    signature = sign(LOCAL + route.path, params)
    assert_refused(post(client, route.other_query, params, signature), redis)


@routes
def test_request_signed_for_another_host_is_refused(client, redis, route):
    params = route.params()
    signature = sign("http://attacker.example" + route.path, params)
    assert_refused(post(client, route.path, params, signature), redis)


# -- accepted ------------------------------------------------------------------------------


@routes
def test_correctly_signed_request_is_answered_with_twiml(client, route):
    params = route.params()
    assert_answered(post(client, route.path, params, sign(LOCAL + route.path, params)))


@routes
def test_signature_for_the_url_with_explicit_default_port_is_accepted(client, route):
    # Twilio signs with or without ":80"/":443" depending on the product; both must pass.
    params = route.params()
    signature = sign("http://localhost:80" + route.path, params)
    assert_answered(post(client, route.path, params, signature))


# Percent-escapes Twilio keeps as configured: "{", "/", UTF-8 and a space.
ESCAPED_QUERY = "ref=caf%C3%A9%2F%7B1%7D%20x"


def _with_escaped_query(path: str) -> str:
    return path + ("&" if "?" in path else "?") + ESCAPED_QUERY


@routes
def test_request_signed_for_a_url_with_percent_escapes_is_accepted(client, route):
    path = _with_escaped_query(route.path)
    params = route.params()
    assert_answered(post(client, path, params, sign(LOCAL + path, params)))


def test_signed_sms_gets_the_flow_reply_and_its_state_is_kept(client, redis):
    params = sms_params("SAFE")
    response = post(client, "/twilio/sms", params, sign(LOCAL + "/twilio/sms", params))
    assert_answered(response)
    assert "After any break" in response.get_data(as_text=True)
    assert redis.keys("helpline:sms:conv:*")


def test_signed_status_callback_is_counted(client, redis):
    params = _sms_status_params()
    signature = sign(LOCAL + "/twilio/sms/status", params)
    response = post(client, "/twilio/sms/status", params, signature)
    assert_answered(response)
    assert redis.hgetall("helpline:stats:sms") == {b"delivered": b"1"}


# -- behind a proxy ------------------------------------------------------------------------


@pytest.fixture
def public_client(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> FlaskClient:
    settings = make_settings(tmp_path / "var", redis_server, public_url=PUBLIC)
    return create_app(settings).test_client()


@routes
def test_with_public_url_a_request_signed_for_the_public_url_is_accepted(public_client, route):
    params = route.params()
    signature = sign(PUBLIC + route.path, params)
    assert_answered(post(public_client, route.path, params, signature))


@routes
def test_with_public_url_a_request_signed_for_the_local_url_is_refused(public_client, redis, route):
    params = route.params()
    signature = sign(LOCAL + route.path, params)
    assert_refused(post(public_client, route.path, params, signature), redis)


@routes
def test_with_public_url_a_url_with_percent_escapes_is_accepted(public_client, route):
    path = _with_escaped_query(route.path)
    params = route.params()
    assert_answered(post(public_client, path, params, sign(PUBLIC + path, params)))


def test_with_public_url_forwarded_headers_cannot_redirect_the_check(public_client, redis):
    # PUBLIC_URL wins: a request claiming another host is still checked against it.
    params = sms_params("SAFE")
    signature = sign(TUNNEL + "/twilio/sms", params)
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tunnel.example.net"}
    assert_refused(post(public_client, "/twilio/sms", params, signature, headers), redis)


def test_with_public_url_the_sms_reply_is_the_normal_flow_reply(public_client):
    params = sms_params("SAFE", sender="+447700900321")
    response = post(public_client, "/twilio/sms", params, sign(PUBLIC + "/twilio/sms", params))
    assert_answered(response)
    assert "After any break" in response.get_data(as_text=True)


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tunnel.example.net"}


@pytest.fixture
def proxied_client(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> FlaskClient:
    """The app behind a trusted proxy on this machine (a tunnel's local end)."""
    trusted = parse_networks("127.0.0.1")
    return create_app(
        make_settings(tmp_path / "var", redis_server, trusted_proxies=trusted)
    ).test_client()


@routes
def test_without_public_url_forwarded_proto_and_host_are_honoured(proxied_client, route):
    params = route.params()
    signature = sign(TUNNEL + route.path, params)
    assert_answered(post(proxied_client, route.path, params, signature, FORWARDED))


def test_without_public_url_forwarded_request_signed_for_local_url_is_refused(
    proxied_client, redis
):
    params = sms_params("SAFE")
    signature = sign(LOCAL + "/twilio/sms", params)
    assert_refused(post(proxied_client, "/twilio/sms", params, signature, FORWARDED), redis)


def test_without_forwarded_headers_a_request_signed_for_the_tunnel_is_refused(
    proxied_client, redis
):
    params = sms_params("SAFE")
    signature = sign(TUNNEL + "/twilio/sms", params)
    assert_refused(post(proxied_client, "/twilio/sms", params, signature), redis)


def test_forwarded_headers_from_a_peer_that_is_not_a_trusted_proxy_are_ignored(client, redis):
    params = sms_params("SAFE")
    signature = sign(TUNNEL + "/twilio/sms", params)
    assert_refused(post(client, "/twilio/sms", params, signature, FORWARDED), redis)
    assert_answered(
        post(client, "/twilio/sms", params, sign(LOCAL + "/twilio/sms", params), FORWARDED)
    )


# -- bodies that cannot be read ----------------------------------------------------------------


@routes
def test_a_multipart_field_without_a_name_is_a_bad_request_not_an_error(
    client, redis, route, caplog
):
    params = route.params()
    body = "".join(
        f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in params.items()
    )
    body += "--B\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--B--\r\n"

    response = client.post(
        route.path,
        data=body.encode(),
        content_type="multipart/form-data; boundary=B",
        headers={"X-Twilio-Signature": sign(LOCAL + route.path, params)},
    )

    assert response.status_code == 400
    assert b"<Response" not in response.get_data()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert written(redis) == []


# -- the validator agrees with Twilio's library ----------------------------------------------

SIGNED_URLS = [
    "http://localhost/twilio/sms",
    "http://localhost:80/twilio/sms",
    "http://127.0.0.1:8000/twilio/voice/step?node=main&lang=en&r=0",
    "https://helpline.example.org/twilio/voice",
    "https://helpline.example.org:443/twilio/voice",
    "https://helpline.example.org:8443/twilio/voice?" + ESCAPED_QUERY,
]


@given(
    signed_for=st.sampled_from(SIGNED_URLS),
    checked_as=st.sampled_from(SIGNED_URLS),
    fields=st.lists(
        st.tuples(st.sampled_from(["From", "Body", "Digits", "A"]), st.text(max_size=8)),
        max_size=6,
    ),
    token=st.sampled_from([AUTH_TOKEN, "not-" + AUTH_TOKEN]),
    tamper=st.booleans(),
)
def test_webhook_validator_accepts_exactly_what_twilios_validator_accepts(
    signed_for, checked_as, fields, token, tamper
):
    # Repeated names included: Twilio signs every value of a repeated field, sorted.
    form = MultiDict(fields)
    signature = RequestValidator(token).compute_signature(signed_for, form)
    if tamper:
        signature = signature[:-2] + ("A=" if signature[-2] != "A" else "B=")
    ours = WebhookValidator(AUTH_TOKEN).validate(checked_as, form, signature)
    assert ours == RequestValidator(AUTH_TOKEN).validate(checked_as, form, signature)


def test_webhook_validator_refuses_a_url_with_a_port_out_of_range():
    params = sms_params("SAFE")
    url = "http://localhost:99999/twilio/sms"
    assert not WebhookValidator(AUTH_TOKEN).validate(url, MultiDict(params), sign(url, params))
