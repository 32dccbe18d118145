"""What every response says about itself, and whose X-Forwarded-* headers are believed."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_py
from flask import Flask

from helpline import create_app
from helpline.infrastructure.proxies import TrustedProxies, parse_networks
from helpline.web.headers import HSTS, SECURITY_HEADERS
from tests.factories import make_settings, sms_params, twilio_post

# Every kind of response: console pages, webhooks answered and refused, health, 404s.
RESPONSES = [
    ("get", "/console/login", 200),
    ("get", "/console/", 302),
    ("get", "/console/no-such-page", 404),
    ("get", "/healthz", 200),
    ("get", "/no-such-page", 404),
    ("post", "/twilio/no-such-hook", 404),
    ("post", "/twilio/sms", 403),  # unsigned
    ("get", "/twilio/sms", 405),
]
responses = pytest.mark.parametrize(("method", "path", "status"), RESPONSES)


@responses
def test_every_response_carries_the_security_headers(client, method, path, status):
    response = getattr(client, method)(path)

    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "Strict-Transport-Security" not in response.headers  # development: plain http


def test_a_header_a_view_sets_itself_is_replaced_not_doubled(client):
    with client.get("/console/static/console.css") as response:
        assert response.status_code == 200
        assert response.data  # the file itself, which Flask sends with its own Cache-Control
    names = [name.lower() for name, _value in response.headers]
    for name, value in SECURITY_HEADERS.items():
        assert names.count(name.lower()) == 1, name
        assert response.headers[name] == value


def test_a_signed_webhook_answer_carries_them_too(client):
    response = twilio_post(client, "/twilio/sms", sms_params("SAFE"))

    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
def production(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> Flask:
    return create_app(make_settings(tmp_path / "var", redis_server, env="production"))


@responses
def test_production_sends_hsts_with_every_response(production, method, path, status):
    response = getattr(production.test_client(), method)(path, base_url="https://localhost")

    assert response.status_code == status
    assert response.headers["Strict-Transport-Security"] == HSTS
    assert "max-age=63072000" in HSTS


# -- trusted proxies -------------------------------------------------------------------------


def _seen(networks: str, peer: str, **headers: str) -> dict[str, str]:
    """Return what the app sees of a request from peer with the given X-Forwarded-* headers."""
    seen: dict[str, str] = {}

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        seen.update(
            client=environ["REMOTE_ADDR"],
            scheme=environ["wsgi.url_scheme"],
            host=environ["HTTP_HOST"],
        )
        start_response("204 No Content", [])
        return []

    environ = {
        "REMOTE_ADDR": peer,
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "internal:8000",
        **{f"HTTP_X_FORWARDED_{name.strip('_').upper()}": v for name, v in headers.items()},
    }
    TrustedProxies(app, parse_networks(networks))(environ, lambda *args: None)
    return seen


def test_with_no_trusted_proxies_the_peer_is_the_client_whatever_it_claims():
    seen = _seen("", "203.0.113.5", for_="198.51.100.7", proto="https", host="example.org")

    assert seen == {"client": "203.0.113.5", "scheme": "http", "host": "internal:8000"}


def test_a_trusted_proxy_is_believed_about_the_client_scheme_and_host():
    seen = _seen("10.0.0.0/8", "10.1.2.3", for_="198.51.100.7", proto="https", host="example.org")

    assert seen == {"client": "198.51.100.7", "scheme": "https", "host": "example.org"}


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("192.0.2.1, 198.51.100.7", "198.51.100.7"),  # what the client claimed is ignored
        ("198.51.100.7, 10.0.0.9", "198.51.100.7"),  # a second trusted hop is walked past
        ("not-an-address, 198.51.100.7", "198.51.100.7"),
        ("198.51.100.7, garbage", "10.0.0.2"),  # nothing past an unreadable hop is believed
        ("", "10.0.0.2"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_is_the_first_address_from_the_right_no_trusted_proxy_vouches_for(
    forwarded_for, client
):
    assert _seen("10.0.0.0/8", "10.0.0.2", for_=forwarded_for)["client"] == client
