"""Property-based fuzzing of the webhooks: no signed input, however odd, breaks an answer.

Arbitrary form params (odd Unicode, NUL bytes, 10 kB values, long Digits, huge
SpeechResult) and arbitrary voice-step query args, all correctly signed. Every answer is
a 200 with a <Response>, never the fail-safe (that is for real failures only, so a bug
the error handler hides still fails here), every voice answer says something, and every
SMS reply fits the segment budget. Bodies over MAX_WEBHOOK_BYTES get the fail-safe.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpline.application.composition import Components
from helpline.conversation.gsm import segments
from helpline.infrastructure.constants import MAX_WEBHOOK_BYTES, SMS_MAX_SEGMENTS
from tests.factories import call_params, sign, sms_params

BASE = "http://localhost"
FORM = "application/x-www-form-urlencoded"

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app and Redis for all examples is fine
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- strategies ----------------------------------------------------------------------------

# fmt: off
ODD = [
    "\u200f", "\u200e", "\u202e", "\u2067", "\u2069",  # bidi marks and overrides
    "\ufeff", "\u200b", "\u200d",  # BOM, zero-width space and joiner
    "\x00", "\x07", "\x1b", "\r\n", "\t", "\x85", "\u2028",  # controls and line breaks
    "e\u0301", "\u0301\u0302\u0303\u0304", "Z\u0351\u0352\u0353\u0354\u0355",  # combining
    "🧪", "💉", "👩🏽‍⚕️", "🏳️‍🌈", "\U0001f1ec\U0001f1e7", "\U0010fffd",  # astral planes
    "\ufdfa", "ﬃ", "Ⅻ", "١٢٣", "５", "²",  # NFKD expands or maps to digits
    "ñ", "€", "^{}[]~|\\",  # GSM-7 extension characters
    "<Say>", "]]>", "&amp;", "<!--", "%00", "%", "&", "=", "+", "?", "#",  # markup, URL
    "STOP", "START", "SAFE", "2", "*", "ESPAÑOL", "not breathing", "OD", "999",  # meaning
]
# fmt: on
chars = st.characters(codec="utf-8")  # any code point except lone surrogates
odd_text = st.lists(st.sampled_from(ODD) | st.text(chars, max_size=4), max_size=40).map("".join)
text = st.text(chars, max_size=300) | odd_text


@st.composite
def big_text(draw: st.DrawFn, min_size: int = 8_000, max_size: int = 12_000) -> str:
    """About 10 kB: a fuzzed piece repeated (hypothesis draws big strings slowly)."""
    piece = draw((text | st.sampled_from(ODD)).filter(bool))
    size = draw(st.integers(min_size, max_size))
    return (piece * (size // len(piece) + 1))[:size]


digits = st.text("0123456789*#", max_size=20) | st.text("0123456789*# w", max_size=5_000)
field = text | big_text()
phone = st.from_regex(r"\+?[0-9]{3,16}", fullmatch=True) | text
extra_params = st.dictionaries(text.map(lambda s: s[:40]), field, max_size=6)


@st.composite
def sms_form(draw: st.DrawFn) -> dict[str, str]:
    params = sms_params(draw(field), sender=draw(phone))
    if draw(st.booleans()):
        params["MessageSid"] = draw(text)
    params.update(draw(extra_params))
    return params


@st.composite
def call_form(draw: st.DrawFn) -> dict[str, str]:
    params = call_params(sender=draw(phone))
    params.update(
        draw(st.fixed_dictionaries({}, optional={"Digits": digits, "SpeechResult": field}))
    )
    params.update(draw(extra_params))
    return params


VOICE_NODES = [
    "greeting",
    "main",
    "emergency",
    "safety",
    "safety_signs",
    "recovery",
    "someone",
    "goodbye",
]
step_args = st.fixed_dictionaries(
    {},
    optional={
        "node": st.sampled_from(VOICE_NODES) | text,
        "lang": st.sampled_from(["en", "es", "EN", "fr", ""]) | text,
        "r": st.sampled_from(["0", "1", "2", "3", "-1", "01", " 1", "١", "1e3"]) | text,
    },
)

# -- helpers -------------------------------------------------------------------------------


def services(client: FlaskClient) -> Components:
    helpline: Components = client.application.extensions["helpline"]
    return helpline


def signed_post(client: FlaskClient, path: str, params: dict[str, str]) -> tuple[int, str, int]:
    """POST params form-encoded, signed as Twilio signs; return (status, body, body size)."""
    body = urlencode(params).encode("ascii")
    response = client.post(
        path,
        data=body,
        content_type=FORM,
        headers={"X-Twilio-Signature": sign(BASE + path, params)},
    )
    return response.status_code, response.get_data(as_text=True), len(body)


def fuzzed_post(client: FlaskClient, path: str, params: dict[str, str]) -> tuple[int, str, int]:
    """signed_post, noting the body size for --hypothesis-show-statistics."""
    status, body, size = signed_post(client, path, params)
    if size > MAX_WEBHOOK_BYTES:
        event("body over the size limit")
    else:
        event("body of 10 kB up to the limit" if size >= 10_000 else "body under 10 kB")
    return status, body, size


def response_root(status: int, body: str) -> ET.Element:
    assert status == 200, (status, body[:500])
    root = ET.fromstring(body)
    assert root.tag == "Response"
    return root


def check_sms(client: FlaskClient, status: int, body: str, size: int) -> None:
    root = response_root(status, body)
    for message in root.iter("Message"):
        reply = "".join(message.itertext())
        assert reply.strip()
        assert segments(reply) <= SMS_MAX_SEGMENTS, reply
    failsafe = body in services(client).sms_failsafe.values()
    assert failsafe == (size > MAX_WEBHOOK_BYTES), "fail-safe used for a well-formed text"


def check_voice(client: FlaskClient, status: int, body: str, size: int) -> None:
    root = response_root(status, body)
    says = ["".join(say.itertext()).strip() for say in root.iter("Say")]
    assert says and all(says), "the caller must never be left in silence"
    assert root.find("Gather") is not None or root.find("Hangup") is not None
    for gather in root.iter("Gather"):
        assert gather.attrib["action"].startswith("/twilio/voice/step?")
    failsafe = body in services(client).voice_failsafe.values()
    assert failsafe == (size > MAX_WEBHOOK_BYTES), "fail-safe used for a well-formed call"


# -- properties ----------------------------------------------------------------------------


@FUZZ
@given(params=sms_form())
def test_any_signed_text_gets_a_twiml_reply_that_fits_two_segments(client, params):
    check_sms(client, *fuzzed_post(client, "/twilio/sms", params))


@settings(FUZZ, max_examples=150)
@given(params=call_form())
def test_any_signed_incoming_call_is_greeted_with_twiml(client, params):
    check_voice(client, *fuzzed_post(client, "/twilio/voice", params))


@settings(FUZZ, max_examples=400)
@given(args=step_args, params=call_form())
def test_any_signed_voice_step_with_any_query_gets_spoken_twiml(client, args, params):
    path = "/twilio/voice/step" + (f"?{urlencode(args)}" if args else "")
    check_voice(client, *fuzzed_post(client, path, params))


# -- size limit ----------------------------------------------------------------------------

OVERSIZE_PATHS = ["/twilio/sms", "/twilio/voice", "/twilio/voice/step?node=main&lang=en&r=0"]


def _padded(params: dict[str, str], field: str, total: int) -> dict[str, str]:
    """params with field grown so the encoded body is exactly total bytes."""
    params = {**params, field: ""}
    params[field] = "a" * (total - len(urlencode(params)))
    assert len(urlencode(params)) == total
    return params


@pytest.mark.parametrize("path", OVERSIZE_PATHS)
def test_body_over_the_size_limit_gets_the_failsafe_twiml_not_an_error(client, path):
    params = _padded(sms_params("SAFE"), "Padding", MAX_WEBHOOK_BYTES + 1)
    status, body, size = signed_post(client, path, params)
    assert size == MAX_WEBHOOK_BYTES + 1
    if path == "/twilio/sms":
        check_sms(client, status, body, size)
        assert "Call 999 now" in body
    else:
        check_voice(client, status, body, size)
        assert "call 9 9 9" in body


def test_text_at_the_size_limit_gets_the_normal_reply(client):
    params = _padded(sms_params("SAFE"), "Pad", MAX_WEBHOOK_BYTES)
    status, body, size = signed_post(client, "/twilio/sms", params)
    check_sms(client, status, body, size)
    assert "After any break" in body


def test_huge_speech_result_at_the_size_limit_is_still_understood(client):
    speech = "he's not breathing " * 200
    params = _padded(call_params(SpeechResult=speech), "Pad", MAX_WEBHOOK_BYTES)
    status, body, size = signed_post(client, "/twilio/voice/step?node=main&lang=en&r=0", params)
    check_voice(client, status, body, size)
    assert "Give naloxone if you have it" in body
