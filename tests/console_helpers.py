"""Helpers for console tests: accounts, logging in with the form's CSRF token, queueing."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from helpline.callbacks.queue import Contact, Request
from helpline.counsellors.accounts import Counsellor, Counsellors
from helpline.web.services import helpline
from tests.factories import callback_number

PASSWORD = "correct horse battery"
COUNSELLOR_PHONE = "+447700900501"
ADMIN_PHONE = "+447700900502"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_counsellor(
    app: Flask, username: str = "alex", *, admin: bool = False, phone: str | None = None
) -> Counsellor:
    accounts: Counsellors = app.extensions["console"].counsellors
    return accounts.add(
        username,
        name=username.title(),
        phone=phone or (ADMIN_PHONE if admin else COUNSELLOR_PHONE),
        password=PASSWORD,
        admin=admin,
    )


class SchemeClient(FlaskClient):
    """A test client whose requests arrive over `scheme` (https unless a test changes it)."""

    scheme = "https"

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", f"{self.scheme}://localhost")
        return super().open(*args, **kwargs)


def https_client(app: Flask, address: str = "127.0.0.1") -> SchemeClient:
    """Return a test client whose requests arrive over https from address."""
    client = SchemeClient(app, app.response_class, use_cookies=True)
    # Over https, forms are accepted only from our own pages, as a browser's Referer shows.
    client.environ_base.update(REMOTE_ADDR=address, HTTP_REFERER="https://localhost/console/")
    return client


def client_from(app: Flask, address: str) -> FlaskClient:
    """Return a test client whose requests come from address (the socket's peer)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def csrf_token(client: FlaskClient, path: str = "/console/login") -> str:
    """Return the CSRF token from a form on the page at path."""
    page = client.get(path)
    found = _TOKEN.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path} (status {page.status_code})"
    return found.group(1)


def login(client: FlaskClient, username: str = "alex", password: str = PASSWORD) -> Any:
    token = csrf_token(client)
    return client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": token},
    )


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> Any:
    """POST a console form with a valid CSRF token taken from the queue page."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, "/console/")})


def enqueue(app: Flask, n: int = 0, *, urgent: bool = False, channel: str = "sms") -> Request:
    with app.app_context():
        placed = helpline().queue.enqueue(
            Contact(callback_number(n), voicemail_ok=True, texts_ok=True),
            channel=channel,
            lang="en",
            urgent=urgent,
        )
    return placed.request
