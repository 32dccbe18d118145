"""Settings read from the environment, once, by the app factory or the CLI."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from helpline.conversation.regions import Region, load_region
from helpline.infrastructure.constants import (
    DEFAULT_TWILIO_API_URL,
    MIN_SECRET_BITS_PER_CHAR,
    MIN_SECRET_CHARS,
    MIN_SECRET_DISTINCT,
    PASSWORD_METHOD,
    REDIS_BREAKER_SECONDS,
)
from helpline.infrastructure.errors import ConfigError
from helpline.infrastructure.hours import OpeningHours
from helpline.infrastructure.phones import to_e164
from helpline.infrastructure.proxies import Network, parse_networks

# HELPLINE_LOG_LEVEL: INFO logs what the service did (a callback queued, an opt-out, a
# failure); DEBUG adds a line per call step and per text, which says who (masked) asked
# about what, so it stays off unless someone is chasing a problem.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


# The flows, content and region files the service runs, unless HELPLINE_FLOWS_DIR says.
DEFAULT_FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
DEFAULT_REGION = "GB"


@functools.cache
def _default_region() -> Region:
    return load_region(DEFAULT_FLOWS_DIR, DEFAULT_REGION)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    env: str = "development"
    data_dir: Path = Path("var")
    redis_url: str | None = None
    twilio_account_sid: str = "AC" + "0" * 32
    twilio_auth_token: str = ""
    twilio_api_url: str = DEFAULT_TWILIO_API_URL
    phone_number: str = "+15005550006"
    public_url: str | None = None
    secret_key: str = ""
    encryption_key: str | None = None
    port: int = 5000
    region: Region = field(default_factory=_default_region)
    flows_dir: Path = DEFAULT_FLOWS_DIR
    hours: str = "always"  # when counsellors are on duty (see helpline.infrastructure.hours)
    timezone: str | None = None  # None: the region's
    callback_expiry_hours: float = 72.0  # an unanswered request closes after this long
    retention_days: float = 30.0  # a closed request is deleted after this long
    checkin_retention_hours: float = 24.0  # a closed check-in session is deleted after this
    # Seconds in a check-in "minute" (the wait asked for, the retry gap, the re-alert):
    # 60, except where a demo or a test shortens it (HELPLINE_CHECKIN_MINUTE_SECONDS,
    # refused in production).
    checkin_minute_seconds: float = 60.0
    log_level: str = "INFO"
    # Proxies whose X-Forwarded-* headers are believed (HELPLINE_TRUSTED_PROXIES); none.
    trusted_proxies: tuple[Network, ...] = ()
    # Not read from the environment: tests shorten or cheapen them.
    redis_breaker_seconds: float = REDIS_BREAKER_SECONDS
    password_method: str = PASSWORD_METHOD  # how counsellors' passwords are hashed

    @property
    def encryption_secret(self) -> str:
        """The secret that encrypts numbers at rest: its own key, else SECRET_KEY."""
        return self.encryption_key or self.secret_key

    @property
    def zone(self) -> str:
        return self.timezone or self.region.timezone

    @property
    def production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with some values changed (used by tests and the CLI)."""
        return replace(self, **changes)


# Variables production refuses to run without, and why each matters.
_REQUIRED_IN_PRODUCTION = {
    "TWILIO_ACCOUNT_SID": "the Twilio account the helpline sends from",
    "TWILIO_AUTH_TOKEN": "checks that webhooks really come from Twilio",
    "SECRET_KEY": "signs sessions and encrypts phone numbers at rest",
    "HELPLINE_PHONE_NUMBER": "caller ID for outbound calls and texts",
    "PUBLIC_URL": "the address Twilio signs webhooks for",
    "REDIS_URL": "where callback requests are kept durably",
}
_NEW_SECRET = 'generate one with: python3 -c "import secrets; print(secrets.token_hex(32))"'
# Secrets production checks, and how to get a good one.
_SECRETS = {
    "SECRET_KEY": _NEW_SECRET,
    "HELPLINE_ENCRYPTION_KEY": _NEW_SECRET,
    "TWILIO_AUTH_TOKEN": "copy the Auth Token from the Twilio console",
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment; in development, fill secrets from the data dir."""
    env = dict(os.environ if environ is None else environ)
    mode = env.get("HELPLINE_ENV", "development").strip().lower() or "development"
    if mode not in {"development", "production"}:
        raise ConfigError(f"HELPLINE_ENV must be 'development' or 'production', not {mode!r}")

    if mode == "production":
        missing = [
            f"{name} ({why})" for name, why in _REQUIRED_IN_PRODUCTION.items() if not env.get(name)
        ]
        if missing:
            raise ConfigError(
                "production refuses to start without real secrets; set: " + ", ".join(missing)
            )
        problems = _production_problems(env)
        if problems:
            raise ConfigError("production refuses weak settings: " + "; ".join(problems))

    flows_dir = Path(env.get("HELPLINE_FLOWS_DIR") or DEFAULT_FLOWS_DIR)
    region = load_region(flows_dir, env.get("HELPLINE_REGION", DEFAULT_REGION).strip().upper())

    port_text = env.get("PORT", "5000")
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"PORT must be a number from 1 to 65535, not {port_text!r}") from None

    log_level = env.get("HELPLINE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in LOG_LEVELS:
        raise ConfigError(
            f"HELPLINE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}"
        )

    expiry_hours = _positive(env, "HELPLINE_CALLBACK_EXPIRY_HOURS", 72.0)
    retention_days = _positive(env, "HELPLINE_RETENTION_DAYS", 30.0)
    checkin_retention = _positive(env, "HELPLINE_CHECKIN_RETENTION_HOURS", 24.0)
    checkin_minute = _positive(env, "HELPLINE_CHECKIN_MINUTE_SECONDS", 60.0)
    if mode == "production" and checkin_minute != 60.0:
        raise ConfigError("HELPLINE_CHECKIN_MINUTE_SECONDS is for demos and tests only")
    data_dir = Path(env.get("HELPLINE_DATA_DIR") or "var")
    settings = Settings(
        env=mode,
        data_dir=data_dir,
        redis_url=env.get("REDIS_URL") or None,
        twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or Settings.twilio_account_sid,
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
        twilio_api_url=(env.get("TWILIO_API_URL") or DEFAULT_TWILIO_API_URL).rstrip("/"),
        phone_number=env.get("HELPLINE_PHONE_NUMBER") or Settings.phone_number,
        public_url=(env.get("PUBLIC_URL") or "").rstrip("/") or None,
        secret_key=env.get("SECRET_KEY", ""),
        encryption_key=env.get("HELPLINE_ENCRYPTION_KEY") or None,
        port=port,
        region=region,
        flows_dir=flows_dir,
        hours=env.get("HELPLINE_HOURS", "always"),
        timezone=env.get("HELPLINE_TIMEZONE") or None,
        callback_expiry_hours=expiry_hours,
        retention_days=retention_days,
        checkin_retention_hours=checkin_retention,
        checkin_minute_seconds=checkin_minute,
        log_level=log_level,
        trusted_proxies=parse_networks(env.get("HELPLINE_TRUSTED_PROXIES", "")),
    )
    # Fail at start-up, not at the first caller, if the hours cannot be read.
    OpeningHours.parse(settings.hours, settings.zone)
    if not settings.production:
        settings = _fill_dev_secrets(settings)
    return settings


def _production_problems(env: Mapping[str, str]) -> list[str]:
    """Say what is wrong with each setting production cannot run safely with."""
    problems = []
    for name, fix in _SECRETS.items():
        weakness = secret_weakness(env[name]) if env.get(name) else None
        if weakness:
            problems.append(f"{name} {weakness}; {fix}")
    sid = env["TWILIO_ACCOUNT_SID"].strip()
    if not re.fullmatch(r"AC[0-9a-f]{32}", sid):
        problems.append(
            "TWILIO_ACCOUNT_SID must be 'AC' and 32 hex digits, as the Twilio console shows it"
        )
    public = urlsplit(env["PUBLIC_URL"].strip())
    if public.scheme != "https" or not public.hostname or public.query or public.fragment:
        problems.append(
            f"PUBLIC_URL must be the https:// address Twilio and counsellors use, such as "
            f"https://helpline.example.org, not {env['PUBLIC_URL']!r}"
        )
    number = env["HELPLINE_PHONE_NUMBER"].strip()
    if not number.startswith("+") or to_e164(number, "ZZ") != number:
        problems.append(
            "HELPLINE_PHONE_NUMBER must be a valid number in E.164 form: '+', country "
            f"code and number, no spaces, such as +442079460123, not {number[:20]!r}"
        )
    return problems


def secret_weakness(value: str) -> str | None:
    """Say why a secret is too weak for production; None if it is not."""
    if len(value) < MIN_SECRET_CHARS:
        return f"is only {_characters(len(value))} long; it needs at least {MIN_SECRET_CHARS}"
    counts = Counter(value)
    if len(counts) < MIN_SECRET_DISTINCT:
        return (
            f"uses only {_characters(len(counts), 'distinct ')}; a random secret uses at least "
            f"{MIN_SECRET_DISTINCT}"
        )
    bits = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    if bits < MIN_SECRET_BITS_PER_CHAR:
        return f"is too predictable ({bits:.1f} bits of entropy per character, not random)"
    if any(value[step:] == value[:-step] for step in range(1, len(value) // 2 + 1)):
        return "repeats a short pattern"
    return None


def _characters(n: int, kind: str = "") -> str:
    return f"{n} {kind}character" + ("" if n == 1 else "s")


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
        if value <= 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{name} must be a positive number, not {text!r}") from None
    return value


def _fill_dev_secrets(settings: Settings) -> Settings:
    """Generate the development auth token and secret key once, into the data dir."""
    if settings.twilio_auth_token and settings.secret_key:
        return settings
    path = settings.data_dir / "dev-secrets.json"
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        stored = {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; delete it to start afresh") from exc
    changed = False
    for name in ("twilio_auth_token", "secret_key"):
        if not stored.get(name):
            stored[name] = secrets.token_hex(32 if name == "secret_key" else 16)
            changed = True
    if changed:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
    return settings.with_overrides(
        twilio_auth_token=settings.twilio_auth_token or stored["twilio_auth_token"],
        secret_key=settings.secret_key or stored["secret_key"],
    )
