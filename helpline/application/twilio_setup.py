"""Point the helpline's Twilio number at this deployment, through Twilio's REST API.

`helpline twilio configure` finds the number among the account's IncomingPhoneNumbers
and sets its voice and messaging webhooks, their fallbacks and the call status
callback to PUBLIC_URL's paths (helpline.web.webhooks), all by POST. A TwiML App set on
the number would take precedence over every URL, so it is taken off. Twilio keeps no
delivery-status setting on a number: that one is asked for with each message sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from helpline.application.config import is_public_https
from helpline.infrastructure.errors import HelplineError, OutboundError
from helpline.infrastructure.outbound import rest_call
from helpline.infrastructure.privacy import hide_password

if TYPE_CHECKING:
    from twilio.rest import Client

    from helpline.application.config import Settings

# Each setting: the resource's field, Twilio's update parameter, what it is called in
# the console, and our path (for URLs) or value (methods: our webhooks take POST only).
WEBHOOKS = (
    ("voice_url", "VoiceUrl", 'voice URL ("A call comes in")', "/twilio/voice"),
    ("voice_method", "VoiceMethod", "voice URL method", "POST"),
    ("voice_fallback_url", "VoiceFallbackUrl", 'voice fallback ("Primary handler fails")',
     "/twilio/voice/fallback"),
    ("voice_fallback_method", "VoiceFallbackMethod", "voice fallback method", "POST"),
    ("status_callback", "StatusCallback", "call status changes", "/twilio/voice/status"),
    ("status_callback_method", "StatusCallbackMethod", "call status method", "POST"),
    ("sms_url", "SmsUrl", 'messaging URL ("A message comes in")', "/twilio/sms"),
    ("sms_method", "SmsMethod", "messaging URL method", "POST"),
    ("sms_fallback_url", "SmsFallbackUrl", 'messaging fallback ("Primary handler fails")',
     "/twilio/sms/fallback"),
    ("sms_fallback_method", "SmsFallbackMethod", "messaging fallback method", "POST"),
    ("voice_application_sid", "VoiceApplicationSid", "voice TwiML App (overrides the URLs)", ""),
    ("sms_application_sid", "SmsApplicationSid", "messaging TwiML App (overrides the URLs)", ""),
)  # fmt: skip


# A phone number as Twilio writes one: '+', country code and number, no spaces.
E164 = re.compile(r"\+[1-9]\d{6,14}")


class SetupError(HelplineError):
    """The number cannot be checked or configured; the message says what to do."""


@dataclass(frozen=True)
class Change:
    """One setting of the number: what it is and what it should be."""

    label: str
    param: str  # Twilio's update parameter
    old: str
    new: str

    @property
    def needed(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True)
class Plan:
    """The number found on the account, and each of its settings against ours."""

    number: str
    sid: str
    settings: tuple[Change, ...]

    @property
    def changes(self) -> list[Change]:
        return [s for s in self.settings if s.needed]


class TwilioSetup:
    """Reads and sets the number's webhooks; never prints or returns a secret."""

    def __init__(self, client: Client, settings: Settings):
        self.client = client
        self.settings = settings

    def plan(self, number: str | None = None) -> Plan:
        """Find the number on the account and compare each setting with PUBLIC_URL's."""
        base = self._public_url()
        wanted = number or self.settings.phone_number
        if not E164.fullmatch(wanted):
            raise SetupError(
                f"{wanted!r} is not a phone number in E.164 form: '+', country code and "
                "number, no spaces, such as +442079460123"
            )
        if not self.settings.twilio_credentials:
            raise SetupError(
                "no Twilio credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to the "
                "Account SID and Auth Token shown in the Twilio console"
            )
        found = self._call(lambda: self._numbers.list(phone_number=wanted, limit=20))
        # Twilio's filter also matches numbers that only contain these digits.
        exact = [n for n in found if n.phone_number == wanted]
        if not exact:
            raise SetupError(
                f"{wanted} is not a number on the Twilio account "
                f"{self.settings.twilio_account_sid}: check HELPLINE_PHONE_NUMBER (or --number) "
                "and that the credentials are this account's"
            )
        resource = exact[0]
        return Plan(
            number=wanted,
            sid=str(resource.sid),
            settings=tuple(
                Change(
                    label,
                    param,
                    getattr(resource, field) or "",
                    base + value if value.startswith("/") else value,
                )
                for field, param, label, value in WEBHOOKS
            ),
        )

    def account(self) -> tuple[str, str]:
        """Read the account through the API (proof the credentials work): name and status."""
        sid = self.settings.twilio_account_sid
        found = self._call(lambda: self.client.api.v2010.accounts(sid).fetch())
        return str(found.friendly_name or ""), str(found.status)

    def apply(self, plan: Plan) -> Plan:
        """Make the changes the plan found needed, in one update; return the number as it is."""
        changes = {c.param: c.new for c in plan.changes}
        if changes:
            self._call(lambda: self._numbers(plan.sid).update(**_keywords(changes)))
        return self.plan(plan.number)

    def warnings(self) -> list[str]:
        """What is allowed but unwise about PUBLIC_URL (development only; production refuses)."""
        base = self._public_url()
        if urlsplit(base).scheme != "https":
            return [
                f"PUBLIC_URL {shown(base)} is plain http: Twilio would send callers' numbers and "
                "messages unencrypted; use an https:// address outside development"
            ]
        return []

    @property
    def _numbers(self) -> Any:
        return self.client.api.v2010.accounts(
            self.settings.twilio_account_sid
        ).incoming_phone_numbers

    def _public_url(self) -> str:
        base = self.settings.public_url
        if not base:
            raise SetupError(
                "PUBLIC_URL is not set: set it to the https:// address at which Twilio reaches "
                "this service, such as https://helpline.example.org"
            )
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SetupError(f"PUBLIC_URL {shown(base)!r} is not an http(s):// address")
        if self.settings.production and not is_public_https(base):
            raise SetupError(
                f"PUBLIC_URL must be an https:// address in production, not {shown(base)!r}"
            )
        return base

    def _call(self, send: Any) -> Any:
        try:
            return rest_call(send)
        except OutboundError as exc:
            raise SetupError(describe(exc, self.settings.twilio_api_url)) from None


def describe(exc: OutboundError, api_url: str) -> str:
    """Say what a failed REST request means for an operator."""
    if exc.status is None:
        return f"cannot reach Twilio's API at {api_url} (no answer, or the network failed)"
    if exc.status in (401, 403):
        return (
            f"Twilio refused the credentials (HTTP {exc.status}): check TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN against the Twilio console"
        )
    return f"Twilio's API answered HTTP {exc.status} (error {exc.code}); try again later"


def shown(url: str) -> str:
    """The URL as printed: any user name and password in it hidden."""
    return hide_password(url) if url else "(none)"


def _keywords(changes: dict[str, str]) -> dict[str, str]:
    """Twilio's parameter names as twilio-python's keyword arguments (VoiceUrl: voice_url)."""
    fields = {param: field for field, param, _, _ in WEBHOOKS}
    return {fields[param]: value for param, value in changes.items()}
