"""Outbound texts and calls through Twilio's REST API; used by workers, never by webhooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from helpline.infrastructure.constants import (
    DEFAULT_TWILIO_API_URL,
    TWILIO_OPTED_OUT_CODE,
    TWILIO_RETRY_STATUSES,
    TWILIO_TIMEOUT,
)
from helpline.infrastructure.errors import Failure, OutboundError

if TYPE_CHECKING:
    from helpline.application.config import Settings

# Seconds of clock difference allowed between us and Twilio when matching a sent text.
SEND_CLOCK_SKEW = 120

# Network failures after which a later attempt may well succeed.
_TRANSIENT = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    json.JSONDecodeError,  # a garbled 2xx body: the request may or may not have gone through
)


class _HttpClient(TwilioHttpClient):
    """Twilio's HTTP client with a timeout, no retries, and an optional other base URL."""

    def __init__(self, api_url: str, timeout: float):
        super().__init__(timeout=timeout)
        # RQ retries whole jobs with backoff; retries hidden down here would multiply them.
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, HTTPAdapter(max_retries=0))
        self.api_url = api_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        """Send the request, to the configured base URL when it is not Twilio's own."""
        if self.api_url != DEFAULT_TWILIO_API_URL and url.startswith(DEFAULT_TWILIO_API_URL + "/"):
            url = self.api_url + url[len(DEFAULT_TWILIO_API_URL) :]
        return super().request(method, url, *args, **kwargs)


def make_client(settings: Settings, *, timeout: float = TWILIO_TIMEOUT) -> Client:
    """Build the Twilio REST client for the configured account and API base URL."""
    return Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=_HttpClient(settings.twilio_api_url, timeout),
        # Settings are the only configuration: keep the client from reading TWILIO_EDGE or
        # TWILIO_REGION from the process environment and sending requests to another host.
        environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""},
    )


def send_text(
    client: Client, *, sender: str, to: str, body: str, status_callback: str | None = None
) -> str:
    """Send one SMS and return its Message SID."""
    extra = {"status_callback": status_callback} if status_callback else {}
    message = _request(lambda: client.messages.create(to=to, from_=sender, body=body, **extra))
    return str(message.sid)


def send_template(
    client: Client,
    *,
    sender: str,
    to: str,
    content_sid: str,
    variables: dict[str, str],
    status_callback: str | None = None,
) -> str:
    """Send one approved template (WhatsApp, outside its 24-hour window); return the SID."""
    extra = {"status_callback": status_callback} if status_callback else {}
    message = _request(
        lambda: client.messages.create(
            to=to,
            from_=sender,
            content_sid=content_sid,
            content_variables=json.dumps(variables, ensure_ascii=False),
            **extra,
        )
    )
    return str(message.sid)


def place_call(
    client: Client,
    *,
    sender: str,
    to: str,
    url: str,
    status_callback: str | None = None,
    machine_detection: bool = False,
    timeout: int | None = None,
) -> str:
    """Start an outbound call that fetches TwiML from `url` when answered; return its Call SID.

    machine_detection: Twilio tells `url` whether a person or a machine answered
    (AnsweredBy). timeout: seconds to let it ring.
    """
    extra: dict[str, Any] = {"status_callback": status_callback} if status_callback else {}
    if status_callback:
        extra["status_callback_event"] = ["completed"]
    if machine_detection:
        extra["machine_detection"] = "Enable"
    if timeout is not None:
        extra["timeout"] = timeout
    call = _request(lambda: client.calls.create(to=to, from_=sender, url=url, **extra))
    return str(call.sid)


def find_call(client: Client, *, sender: str, to: str, since: float) -> str | None:
    """Return the SID of a call placed from sender to to since `since`, if Twilio has one.

    Used after an attempt that may or may not have reached Twilio (a killed worker).
    """
    after = datetime.fromtimestamp(since - SEND_CLOCK_SKEW, UTC)
    calls = _request(lambda: client.calls.list(to=to, from_=sender, limit=20))
    for call in calls:
        created = call.date_created
        if created is None or created >= after:
            return str(call.sid)
    return None


def find_sent(client: Client, *, sender: str, to: str, body: str, since: float) -> str | None:
    """Return the SID of a text already sent from sender to to with body since `since`.

    Used after an attempt that may or may not have reached Twilio (a timeout, a killed
    worker): the message log is the only record of whether it went.
    """
    after = datetime.fromtimestamp(since - SEND_CLOCK_SKEW, UTC)
    messages = _request(lambda: client.messages.list(to=to, from_=sender, limit=50))
    for message in messages:
        created = message.date_created
        if message.body == body and (created is None or created >= after):
            return str(message.sid)
    return None


def classify(status: int | None, code: int | None) -> Failure:
    """Decide whether a failed request is worth retrying, from its HTTP status and Twilio code."""
    if code == TWILIO_OPTED_OUT_CODE:
        return Failure.OPTED_OUT
    if status is None or status >= 500 or status in TWILIO_RETRY_STATUSES:
        return Failure.RETRY
    return Failure.PERMANENT


def rest_call(send: Callable[[], Any]) -> Any:
    """Run one REST request; any failure is an OutboundError that holds no number."""
    return _request(send)


def _request(send: Callable[[], Any]) -> Any:
    """Run one REST request, turning every failure into an OutboundError with no number in it."""
    error: OutboundError
    try:
        return send()
    except (TwilioRestException, TwilioServiceException) as exc:
        status, code = _as_int(exc.status), _as_int(exc.code)
        error = OutboundError(classify(status, code), status, code)
    except _TRANSIENT:
        error = OutboundError(Failure.RETRY)
    except TwilioException as exc:
        # Reading a list: a refused page comes as ("Unable to fetch page", response).
        status, code = _page_failure(exc)
        error = OutboundError(classify(status, code) if status else Failure.PERMANENT, status, code)
    except requests.RequestException:
        error = OutboundError(Failure.PERMANENT)
    # Raised outside the except blocks so that nothing chains Twilio's exception, whose message
    # and URL can carry the phone number, into a traceback or a log line.
    raise error


def _page_failure(exc: TwilioException) -> tuple[int | None, int | None]:
    """Return the HTTP status and Twilio code of a list page Twilio refused, if it was that."""
    response = exc.args[1] if len(exc.args) > 1 else None
    if not isinstance(response, Response):
        return None, None
    try:
        code = json.loads(response.text).get("code")
    except (ValueError, AttributeError):
        code = None
    return _as_int(response.status_code), _as_int(code)


def _as_int(value: object) -> int | None:
    """Return value as an int, or None when Twilio sent something else."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
