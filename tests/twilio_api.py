"""A loopback stand-in for Twilio's REST API: texts and calls recorded, failures on demand.

Calls are recorded with every parameter we send (Url, StatusCallback, MachineDetection);
answer_call, gather_input and post_call_status play what Twilio then posts back to us.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.factories import ACCOUNT_SID, WAIT_SECONDS, twilio_post

API_VERSION = "2010-04-01"
_ROUTE = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>AC\w+)/(?P<resource>Messages|Calls)\.json$"
)
_KINDS = {"Messages": "message", "Calls": "call"}
# The account itself, and its phone numbers (listed, fetched, updated).
_ACCOUNT = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>AC\w+)\.json$")
_NUMBERS = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>AC\w+)/IncomingPhoneNumbers"
    r"(?:/(?P<sid>PN\w+))?\.json$"
)
# What an IncomingPhoneNumbers update may change: Twilio's parameter -> resource field.
NUMBER_PARAMS = {
    "FriendlyName": "friendly_name",
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "VoiceFallbackUrl": "voice_fallback_url",
    "VoiceFallbackMethod": "voice_fallback_method",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "VoiceApplicationSid": "voice_application_sid",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
    "SmsApplicationSid": "sms_application_sid",
}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
WHATSAPP = "whatsapp:"  # the prefix of a WhatsApp address in To and From

# Twilio's wording for the errors the stand-in gives; like Twilio's own, some name the number.
MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21205: "Url parameter is required.",
    21211: "The 'To' number {to} is not a valid phone number.",
    21452: "Invalid HTTP method",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21910: "Invalid From and To pair. From and To should be of the same channel",
}
# The Twilio error code that goes with an injected HTTP status when none is given.
STATUS_CODES = {429: 20429, 500: 20500, 503: 20503}


@dataclass(frozen=True)
class Received:
    """One request the stand-in received, and what it answered."""

    kind: str  # "message", "call", "account", "number", or "other" for any other path
    form: dict[str, str]
    at: float  # time.time() when it arrived
    status: int  # HTTP status answered
    sid: str | None  # the Message or Call SID, when the request was accepted
    response: dict[str, Any]  # the JSON body answered

    @property
    def accepted(self) -> bool:
        return self.status == 201


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str | None = None


@dataclass
class _Plan:
    """Failures and delays queued up by the test, consumed request by request."""

    next_failures: list[_Failure] = field(default_factory=list)
    by_recipient: dict[str, _Failure] = field(default_factory=dict)
    delays: list[float] = field(default_factory=list)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Keep the test output free of access lines."""


class TwilioApi:
    """Serve Messages.json and Calls.json on 127.0.0.1 as Twilio does, in a thread."""

    def __init__(self, account_sid: str, auth_token: str):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._received: list[Received] = []
        self._plan = _Plan()
        self._numbers: dict[str, dict[str, Any]] = {}  # the account's phone numbers, by SID
        self.account_status = "active"  # or "suspended", "closed"
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # Life cycle

    def start(self) -> TwilioApi:
        """Bind a free port and serve in a background thread."""
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="twilio-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cutting short any delayed answer."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS)

    def __enter__(self) -> TwilioApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to use as TWILIO_API_URL."""
        assert self._server is not None, "the stand-in is not running"
        return f"http://127.0.0.1:{self._server.server_port}"

    # Failures on demand

    def fail_next(self, count: int = 1, *, status: int = 500, code: int | None = None) -> None:
        """Answer the next `count` requests with this HTTP status and Twilio error code."""
        failure = _Failure(status, code if code is not None else STATUS_CODES.get(status))
        with self._changed:
            self._plan.next_failures.extend(failure for _ in range(count))

    def fail_for(
        self, to: str, code: int, *, status: int = 400, message: str | None = None
    ) -> None:
        """Refuse every request to this recipient with a Twilio error (21610: opted out)."""
        with self._changed:
            self._plan.by_recipient[to] = _Failure(status, code, message)

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Hold the answer to the next `count` requests for `seconds` (they still succeed)."""
        with self._changed:
            self._plan.delays.extend(seconds for _ in range(count))

    # What was received

    def received(self, kind: str | None = None) -> list[Received]:
        """Return every request received, accepted or not, oldest first."""
        with self._changed:
            return [r for r in self._received if kind is None or r.kind == kind]

    def messages(self) -> list[Received]:
        """Return the texts accepted for sending."""
        return [r for r in self.received("message") if r.accepted]

    def calls(self) -> list[Received]:
        """Return the calls accepted for placing."""
        return [r for r in self.received("call") if r.accepted]

    def wait_for(
        self, count: int, *, kind: str | None = None, timeout: float = WAIT_SECONDS
    ) -> list[Received]:
        """Wait until `count` requests (of `kind`, if given) were accepted; return them."""

        def accepted() -> list[Received]:
            return [r for r in self._received if r.accepted and kind in (None, r.kind)]

        with self._changed:
            if not self._changed.wait_for(lambda: len(accepted()) >= count, timeout):
                got = [(r.kind, r.status) for r in self._received]
                raise AssertionError(f"wanted {count} accepted {kind or 'requests'}, got {got}")
            return accepted()

    # The account's phone numbers

    def add_number(self, phone_number: str, **fields: Any) -> str:
        """Put a number on the account, as bought in the console; return its SID."""
        number = _number(self.account_sid, phone_number)
        number.update(fields)
        with self._changed:
            self._numbers[number["sid"]] = number
        return str(number["sid"])

    def number(self, sid: str) -> dict[str, Any]:
        """Return a number's resource as Twilio holds it now."""
        with self._changed:
            return dict(self._numbers[sid])

    # The API itself

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        match = _ROUTE.match(request.path)
        account = _ACCOUNT.match(request.path) or _NUMBERS.match(request.path)
        kind = _KINDS[match["resource"]] if match else "other"
        if account:
            kind = "number" if account.re is _NUMBERS else "account"
        form = request.form.to_dict(flat=True)
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != (self.account_sid, self.auth_token):
            status, body = 401, _error(401, 20003, MESSAGES[20003])
        elif account:
            status, body = self._account(request, account, form)
        elif match and request.method == "GET":
            # Reading the message or call log: what a sender checks after an uncertain send.
            return self._list(match["account"], kind, request.args.get("To", ""))
        elif match is None or request.method != "POST" or match["account"] != auth.username:
            status, body = 404, _error(404, 20404, MESSAGES[20404])
        else:
            status, body = self._create(kind, match["account"], form)

        delay = 0.0
        with self._changed:
            if self._plan.delays:
                delay = self._plan.delays.pop(0)
            sid = body.get("sid") if status == 201 else None
            self._received.append(Received(kind, form, time.time(), status, sid, body))
            self._changed.notify_all()
        if delay:
            self._closing.wait(delay)

        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else {}
        return Response(
            json.dumps(body), status=status, headers=headers, mimetype="application/json"
        )

    def _account(
        self, request: Request, match: re.Match[str], form: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Answer for the account, its numbers list, or one number (fetch or update)."""
        not_found = 404, _error(404, 20404, MESSAGES[20404])
        with self._changed:
            failure = self._plan.next_failures.pop(0) if self._plan.next_failures else None
        if failure is not None:
            code = failure.code if failure.code is not None else failure.status
            return failure.status, _error(failure.status, code, MESSAGES.get(code, "Error"))
        if match["account"] != self.account_sid:
            return not_found
        if match.re is _ACCOUNT:
            if request.method != "GET":
                return not_found
            return 200, _account(self.account_sid, self.auth_token, self.account_status)
        sid = match["sid"]
        with self._changed:
            if sid is None:
                if request.method != "GET":
                    return not_found  # buying a number is not something the stand-in does
                wanted = request.args.get("PhoneNumber", "")
                found = [n for n in self._numbers.values() if _matches(wanted, n["phone_number"])]
                return 200, _page("incoming_phone_numbers", found, request.path)
            number = self._numbers.get(sid)
            if number is None or request.method not in ("GET", "POST"):
                return not_found
            if request.method == "POST":
                for param, value in form.items():
                    if param.endswith("Method") and value.upper() not in ("GET", "POST"):
                        return 400, _error(400, 21452, MESSAGES[21452])
                for param, value in form.items():
                    if param in NUMBER_PARAMS:
                        number[NUMBER_PARAMS[param]] = value
                number["date_updated"] = _now()
            return 200, dict(number)

    def _list(self, account: str, kind: str, to: str) -> Response:
        """Answer a read of the message or call log: newest first, to `to` if given."""
        with self._changed:
            made = [r.response for r in self._received if r.kind == kind and r.accepted]
        found = [m for m in reversed(made) if not to or m["to"] == to]
        resource = "Messages" if kind == "message" else "Calls"
        uri = f"/{API_VERSION}/Accounts/{account}/{resource}.json"
        body = _page(resource.lower(), found, uri)
        return Response(json.dumps(body), status=200, mimetype="application/json")

    def _create(self, kind: str, account: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        to = form.get("To", "")
        with self._changed:
            if self._plan.next_failures:
                failure: _Failure | None = self._plan.next_failures.pop(0)
            else:
                failure = self._plan.by_recipient.get(to)
        if failure is None:
            failure = _validate(kind, form)
        if failure is not None:
            code = failure.code if failure.code is not None else failure.status
            text = failure.message or MESSAGES.get(code, "Error").format(to=to)
            return failure.status, _error(failure.status, code, text)
        return 201, (_message if kind == "message" else _call)(account, form)


def _validate(kind: str, form: dict[str, str]) -> _Failure | None:
    """Refuse what Twilio refuses: missing fields and numbers that are not E.164."""
    if not form.get("To"):
        return _Failure(400, 21604)
    if not form.get("From"):
        return _Failure(400, 21603)
    if kind == "message" and not any(form.get(f) for f in ("Body", "MediaUrl", "ContentSid")):
        return _Failure(400, 21602)
    if kind == "call" and not form.get("Url") and not form.get("Twiml"):
        return _Failure(400, 21205)
    to, sender = form["To"], form["From"]
    if kind == "message" and to.startswith(WHATSAPP) != sender.startswith(WHATSAPP):
        return _Failure(400, 21910)
    if not _E164.match(to.removeprefix(WHATSAPP) if kind == "message" else to):
        return _Failure(400, 21211)
    return None


def _matches(wanted: str, phone_number: str) -> bool:
    """Twilio's PhoneNumber filter: the digits given, anywhere, with * for any digit."""
    digits = re.sub(r"[^0-9*]", "", wanted)
    pattern = "".join(r"\d" if c == "*" else c for c in digits)
    return re.search(pattern, phone_number) is not None


def _page(key: str, items: list[dict[str, Any]], uri: str) -> dict[str, Any]:
    """One page of a list, with Twilio's paging fields (there is never a next page here)."""
    return {
        key: items,
        "first_page_uri": uri,
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": 50,
        "start": 0,
        "end": max(len(items) - 1, 0),
        "uri": uri,
    }


def _account(sid: str, auth_token: str, status: str) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{sid}"
    now = _now()
    return {
        "auth_token": auth_token,  # Twilio's answer carries it: never print one
        "date_created": now,
        "date_updated": now,
        "friendly_name": "Helpline",
        "owner_account_sid": sid,
        "sid": sid,
        "status": status,
        "subresource_uris": {"incoming_phone_numbers": f"{uri}/IncomingPhoneNumbers.json"},
        "type": "Full",
        "uri": f"{uri}.json",
    }


def _number(account: str, phone_number: str) -> dict[str, Any]:
    sid = "PN" + secrets.token_hex(16)
    now = _now()
    return {
        "account_sid": account,
        "address_requirements": "none",
        "address_sid": None,
        "api_version": API_VERSION,
        "beta": False,
        "bundle_sid": None,
        "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
        "date_created": now,
        "date_updated": now,
        "emergency_address_sid": None,
        "emergency_address_status": "unregistered",
        "emergency_status": "Inactive",
        "friendly_name": phone_number,
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": phone_number,
        "sid": sid,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": "https://demo.twilio.com/welcome/sms/reply",
        "status": "in-use",
        "status_callback": "",
        "status_callback_method": "POST",
        "subresource_uris": {
            "assigned_add_ons": f"/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers/"
            f"{sid}/AssignedAddOns.json"
        },
        "trunk_sid": None,
        "type": "local",
        "uri": f"/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers/{sid}.json",
        "voice_application_sid": "",
        "voice_caller_id_lookup": False,
        "voice_fallback_method": "POST",
        "voice_fallback_url": "",
        "voice_method": "POST",
        "voice_receive_mode": "voice",
        "voice_url": "https://demo.twilio.com/welcome/voice/",
    }


def _error(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def _message(account: str, form: dict[str, str]) -> dict[str, Any]:
    sid = "SM" + secrets.token_hex(16)
    uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}"
    now = _now()
    return {
        "account_sid": account,
        "api_version": API_VERSION,
        "body": form.get("Body", ""),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form["From"],
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": form["To"],
        "uri": f"{uri}.json",
    }


def _call(account: str, form: dict[str, str]) -> dict[str, Any]:
    sid = "CA" + secrets.token_hex(16)
    uri = f"/{API_VERSION}/Accounts/{account}/Calls/{sid}"
    now = _now()
    return {
        "account_sid": account,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": form["From"],
        "from_formatted": form["From"],
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": "PN" + "0" * 32,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {"notifications": f"{uri}/Notifications.json"},
        "to": form["To"],
        "to_formatted": form["To"],
        "trunk_sid": None,
        "uri": f"{uri}.json",
    }


# What Twilio posts back to us about a call it placed, for tests to play.


def _path(url: str) -> str:
    """Return the path and query of an absolute URL we gave Twilio."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _call_params(call: Received, **extra: str) -> dict[str, str]:
    return {
        "CallSid": call.sid or "",
        "AccountSid": ACCOUNT_SID,
        "From": call.form.get("From", ""),
        "To": call.form.get("To", ""),
        "Direction": "outbound-api",
        **extra,
    }


def answer_call(client: FlaskClient, call: Received, answered_by: str = "human") -> str:
    """Fetch the call's TwiML as Twilio does when it is picked up (AnsweredBy: AMD's verdict)."""
    params = _call_params(call, CallStatus="in-progress", AnsweredBy=answered_by)
    response = twilio_post(client, _path(call.form["Url"]), params)
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


def gather_input(client: FlaskClient, call: Received, action: str, **said: str) -> str:
    """Post what the callee keyed (Digits) or said (SpeechResult) to a Gather's action."""
    response = twilio_post(
        client, _path(action), _call_params(call, CallStatus="in-progress", **said)
    )
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


def post_call_status(client: FlaskClient, call: Received, status: str) -> int:
    """Post the status callback Twilio sends when the call ends (no-answer, busy, ...)."""
    params = _call_params(call, CallStatus=status, CallDuration="0")
    return int(twilio_post(client, _path(call.form["StatusCallback"]), params).status_code)
