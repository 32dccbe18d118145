"""Play the helpline in a terminal, through the real signed webhook path."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask
from twilio.request_validator import RequestValidator

from helpline.application.config import Settings
from helpline.infrastructure.privacy import mask_phone

Post = Callable[[str, dict[str, str]], str]  # (path with query, form) -> TwiML


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@contextmanager
def in_process(settings: Settings) -> Iterator[Post]:
    """Post to the app in this process, signed exactly as Twilio would sign it."""
    from helpline.web.app import create_app

    app: Flask = create_app(settings)
    client = app.test_client()
    validator = RequestValidator(settings.twilio_auth_token)
    base = settings.public_url or "http://localhost"

    def post(path: str, form: dict[str, str]) -> str:
        signature = validator.compute_signature(base + path, form)
        response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        return response.get_data(as_text=True)

    yield post


@contextmanager
def over_http(base_url: str, auth_token: str) -> Iterator[Post]:
    """Post to a running server (e.g. `helpline serve`) over HTTP, signed."""
    validator = RequestValidator(auth_token)
    base = base_url.rstrip("/")

    def post(path: str, form: dict[str, str]) -> str:
        url = base + path
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(
            url, data=data, headers={"X-Twilio-Signature": validator.compute_signature(url, form)}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"the server answered {exc.code} for {path}: {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise SystemExit(
                f"cannot reach {base}: {exc.reason}; is `helpline serve` running?"
            ) from None

    yield post


def sms(post: Post, sender: str, to: str, text: str) -> str:
    """Send one text; return the reply as the texter would read it."""
    form = {"From": sender, "To": to, "Body": text, "MessageSid": _sid("SM"), "NumMedia": "0"}
    root = ET.fromstring(post("/twilio/sms", form))
    replies = ["".join(m.itertext()) for m in root.iter("Message")]
    return "\n\n".join(replies) if replies else "(no reply)"


def call(
    post: Post,
    sender: str,
    to: str,
    next_input: Callable[[], str | None],
    out: Callable[[str], None],
    start: str = "/twilio/voice",
) -> None:
    """Play a call: print what the caller hears, answer each gather with next_input().

    start: where Twilio fetches the call's first TwiML (a bridged call's answer URL, for
    the counsellor's side of one).
    """
    call_sid = _sid("CA")
    base_form = {"CallSid": call_sid, "From": sender, "To": to, "CallStatus": "in-progress"}
    if start == "/twilio/voice":
        out(f"Calling the helpline from {mask_phone(sender)}")
    else:
        out(f"The helpline calls you on {mask_phone(to)}")
    path, form = start, dict(base_form)
    while True:
        root = ET.fromstring(post(path, form))
        gather = root.find("Gather")
        for say in root.iter("Say"):
            out(f"  helpline: {say.text or ''}")
        for number in root.iter("Number"):
            out(f"  (the helpline dials {mask_phone(number.text)} and connects you)")
        if gather is None:
            out("  (the helpline hangs up)" if root.find("Dial") is None else "  (connected)")
            return
        out("  (waiting for a key press or speech)")
        answer = next_input()
        if answer is None:
            out("  (you hang up)")
            return
        form = dict(base_form)
        if answer.strip() and all(ch.isdigit() or ch in "*#" for ch in answer.strip()):
            out(f"  you press: {answer.strip()}")
            form["Digits"] = answer.strip()
        elif answer.strip():
            out(f"  you say: {answer.strip()}")
            form["SpeechResult"] = answer.strip()
            form["Confidence"] = "0.9"
        else:
            out("  (silence)")
        path = urllib.parse.urlsplit(gather.get("action", "/twilio/voice")).path
        query = urllib.parse.urlsplit(gather.get("action", "")).query
        path = path + (f"?{query}" if query else "")
