"""What every response says about itself."""

from __future__ import annotations

import pytest

from helpline.headers import SECURITY_HEADERS
from tests.factories import sms_params, twilio_post

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


def test_a_signed_webhook_answer_carries_them_too(client):
    response = twilio_post(client, "/twilio/sms", sms_params("SAFE"))

    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
