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

from helpline.conversation.channels import WHATSAPP, Channel
from helpline.conversation.regions import Region, load_region
from helpline.infrastructure.constants import (
    DEFAULT_TWILIO_API_URL,
    MIN_SECRET_BITS_PER_CHAR,
    MIN_SECRET_CHARS,
    MIN_SECRET_DISTINCT,
    PASSWORD_METHOD,
    REDIS_BREAKER_SECONDS,
    REPORT_FLUSH_SECONDS,
    SURVEY_MAX_DELAY_MINUTES,
)
from helpline.infrastructure.errors import ConfigError
from helpline.infrastructure.hours import OpeningHours
from helpline.infrastructure.phones import to_e164
from helpline.infrastructure.proxies import Network, parse_networks
from helpline.infrastructure.store import SentinelTarget

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
    # Sentinel finds the master instead (REDIS_SENTINELS, REDIS_SENTINEL_MASTER).
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    redis_password: str | None = None  # the master's, when Sentinel finds it
    redis_sentinel_password: str | None = None
    # Replicas that must hold a call back request before the caller is told it is kept.
    redis_min_replicas: int = 0
    twilio_account_sid: str = "AC" + "0" * 32
    twilio_auth_token: str = ""
    # Whether TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN were both given (not development's own).
    twilio_credentials: bool = False
    twilio_api_url: str = DEFAULT_TWILIO_API_URL
    phone_number: str = "+15005550006"
    # The WhatsApp sender ("whatsapp:+E164"); None: the helpline's number on WhatsApp.
    whatsapp_from: str | None = None
    # An approved WhatsApp template (its Content SID) for messages outside WhatsApp's
    # 24-hour window; it takes the message as its one variable. None: such messages are
    # not sent, and the request says why.
    whatsapp_template_sid: str | None = None
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
    # Where outbound texts and calls go: "twilio", or "local" (kept in the local outbox,
    # helpline.infrastructure.outbox: development without an account; never production).
    outbox: str = "twilio"
    # A sender's texts a minute and a caller's calls an hour before we answer with the
    # safety essentials only (helpline.application.limits).
    texts_per_minute: int = 20
    calls_per_hour: int = 20
    # Whether counsellors (not only admins) may block a caller from call backs.
    counsellors_may_block: bool = False
    # Minutes after "reached" before the follow-up survey text; 0: no surveys.
    survey_delay_minutes: int = 60
    # Whether the words of a survey answer are kept (sealed on the request), not dropped.
    survey_keep_words: bool = False
    # The bearer token /metrics asks for (HELPLINE_METRICS_TOKEN); None: /metrics is 404.
    metrics_token: str | None = None
    # Proxies whose X-Forwarded-* headers are believed (HELPLINE_TRUSTED_PROXIES); none.
    trusted_proxies: tuple[Network, ...] = ()
    # Not read from the environment: tests shorten or cheapen them.
    redis_breaker_seconds: float = REDIS_BREAKER_SECONDS
    password_method: str = PASSWORD_METHOD  # how counsellors' passwords are hashed
    # Longest a report count waits in a web process for a write to carry it; 0: no timer.
    report_flush_seconds: float = REPORT_FLUSH_SECONDS

    @property
    def encryption_secret(self) -> str:
        """The secret that encrypts numbers at rest: its own key, else SECRET_KEY."""
        return self.encryption_key or self.secret_key

    @property
    def zone(self) -> str:
        return self.timezone or self.region.timezone

    def sender(self, channel: Channel) -> str:
        """The helpline's own address on a channel: what texts and calls come from."""
        if channel is WHATSAPP:
            return self.whatsapp_from or WHATSAPP.address(self.phone_number)
        return self.phone_number

    @property
    def metrics_dir(self) -> Path:
        """Where each process writes its counts for /metrics (helpline.infrastructure.metrics)."""
        return self.data_dir / "metrics"

    @property
    def embedded_redis(self) -> bool:
        """Whether the service runs its own redis-server (neither REDIS_URL nor Sentinel)."""
        return not self.redis_url and not self.redis_sentinels

    @property
    def sentinel(self) -> SentinelTarget | None:
        if not self.redis_sentinels or not self.redis_sentinel_master:
            return None
        return SentinelTarget(
            self.redis_sentinels,
            self.redis_sentinel_master,
            self.redis_password,
            self.redis_sentinel_password,
        )

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
}
# Production needs one of these: where callback requests are kept durably.
_REDIS_SETTINGS = ("REDIS_URL", "REDIS_SENTINELS")
_NEW_SECRET = 'generate one with: python3 -c "import secrets; print(secrets.token_hex(32))"'
# Secrets production checks, and how to get a good one.
_SECRETS = {
    "SECRET_KEY": _NEW_SECRET,
    "HELPLINE_ENCRYPTION_KEY": _NEW_SECRET,
    "TWILIO_AUTH_TOKEN": "copy the Auth Token from the Twilio console",
}
# Secrets production may run without, but not with a weak one.
_OPTIONAL_SECRETS = {"HELPLINE_METRICS_TOKEN": _NEW_SECRET}


def configured_flows_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The flows the deployment runs: HELPLINE_FLOWS_DIR, else the shipped flows/."""
    env = os.environ if environ is None else environ
    return Path(env.get("HELPLINE_FLOWS_DIR") or DEFAULT_FLOWS_DIR)


def load_settings(
    environ: Mapping[str, str] | None = None, *, refuse_weak: bool = True
) -> Settings:
    """Read settings from the environment; in development, fill secrets from the data dir.

    refuse_weak=False reads production settings without refusing missing or weak secrets,
    for `helpline doctor` to report them one by one (see production_problems).
    """
    env = dict(os.environ if environ is None else environ)
    mode = env.get("HELPLINE_ENV", "development").strip().lower() or "development"
    if mode not in {"development", "production"}:
        raise ConfigError(f"HELPLINE_ENV must be 'development' or 'production', not {mode!r}")

    if mode == "production" and refuse_weak:
        problems = production_problems(env)
        missing = [
            f"{name} ({why})" for name, why in _REQUIRED_IN_PRODUCTION.items() if not env.get(name)
        ]
        if not any(env.get(name) for name in _REDIS_SETTINGS):
            missing.append("REDIS_URL or REDIS_SENTINELS (where callback requests are kept)")
        if missing:
            raise ConfigError(
                "production refuses to start without real secrets; set: " + ", ".join(missing)
            )
        if problems:
            raise ConfigError("production refuses weak settings: " + "; ".join(problems.values()))

    flows_dir = configured_flows_dir(env)
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
    sentinels = _sentinels(env.get("REDIS_SENTINELS", ""))
    master = env.get("REDIS_SENTINEL_MASTER", "").strip() or None
    if sentinels and not master:
        raise ConfigError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER: the name Sentinel knows")
    if master and not sentinels:
        raise ConfigError("REDIS_SENTINEL_MASTER needs REDIS_SENTINELS: host:port,host:port")
    if sentinels and env.get("REDIS_URL"):
        raise ConfigError("set REDIS_URL or REDIS_SENTINELS, not both")
    min_replicas = _count(env, "HELPLINE_REDIS_MIN_REPLICAS", 1 if sentinels else 0)
    settings = Settings(
        env=mode,
        data_dir=data_dir,
        redis_url=env.get("REDIS_URL") or None,
        redis_sentinels=sentinels,
        redis_sentinel_master=master,
        redis_password=env.get("REDIS_PASSWORD") or None,
        redis_sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
        redis_min_replicas=min_replicas,
        twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or Settings.twilio_account_sid,
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
        twilio_credentials=bool(env.get("TWILIO_ACCOUNT_SID") and env.get("TWILIO_AUTH_TOKEN")),
        twilio_api_url=(env.get("TWILIO_API_URL") or DEFAULT_TWILIO_API_URL).rstrip("/"),
        phone_number=env.get("HELPLINE_PHONE_NUMBER") or Settings.phone_number,
        whatsapp_from=_whatsapp_from(env),
        whatsapp_template_sid=_content_sid(env, "HELPLINE_WHATSAPP_TEMPLATE_SID"),
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
        metrics_token=env.get("HELPLINE_METRICS_TOKEN") or None,
        counsellors_may_block=_flag(env, "HELPLINE_COUNSELLORS_MAY_BLOCK"),
        survey_delay_minutes=_survey_delay(env),
        survey_keep_words=_flag(env, "HELPLINE_SURVEY_KEEP_WORDS"),
        outbox=_outbox(env, mode),
        texts_per_minute=int(_positive(env, "HELPLINE_TEXTS_PER_MINUTE", 20)),
        calls_per_hour=int(_positive(env, "HELPLINE_CALLS_PER_HOUR", 20)),
    )
    # Fail at start-up, not at the first caller, if the hours cannot be read.
    OpeningHours.parse(settings.hours, settings.zone)
    if not settings.production:
        settings = _fill_dev_secrets(settings)
    return settings


def production_problems(env: Mapping[str, str]) -> dict[str, str]:
    """Say, by variable, what production cannot run with: each one missing, weak or malformed."""
    problems = {
        name: f"{name} is not set ({why})"
        for name, why in _REQUIRED_IN_PRODUCTION.items()
        if not env.get(name)
    }
    for name, fix in {**_SECRETS, **_OPTIONAL_SECRETS}.items():
        weakness = secret_weakness(env[name]) if env.get(name) else None
        if weakness:
            problems[name] = f"{name} {weakness}; {fix}"
    sid = env.get("TWILIO_ACCOUNT_SID", "").strip()
    if sid and not re.fullmatch(r"AC[0-9a-f]{32}", sid):
        problems["TWILIO_ACCOUNT_SID"] = (
            "TWILIO_ACCOUNT_SID must be 'AC' and 32 hex digits, as the Twilio console shows it"
        )
    if env.get("PUBLIC_URL") and not is_public_https(env["PUBLIC_URL"]):
        problems["PUBLIC_URL"] = (
            f"PUBLIC_URL must be the https:// address Twilio and counsellors use, such as "
            f"https://helpline.example.org, not {env['PUBLIC_URL']!r}"
        )
    number = env.get("HELPLINE_PHONE_NUMBER", "").strip()
    if number and (not number.startswith("+") or to_e164(number, "ZZ") != number):
        problems["HELPLINE_PHONE_NUMBER"] = (
            "HELPLINE_PHONE_NUMBER must be a valid number in E.164 form: '+', country "
            f"code and number, no spaces, such as +442079460123, not {number[:20]!r}"
        )
    return problems


def _whatsapp_from(env: Mapping[str, str]) -> str | None:
    text = env.get("HELPLINE_WHATSAPP_FROM", "").strip()
    if not text:
        return None
    number = WHATSAPP.local_part(text)
    if not WHATSAPP.carries(text) or to_e164(number, "ZZ") != number:
        raise ConfigError(
            "HELPLINE_WHATSAPP_FROM must be 'whatsapp:' and the sender's number in E.164 "
            f"form, such as whatsapp:+442079460123, not {text[:40]!r}"
        )
    return WHATSAPP.address(number)


def _content_sid(env: Mapping[str, str], name: str) -> str | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    if not re.fullmatch(r"HX[0-9a-f]{32}", text):
        raise ConfigError(
            f"{name} must be a Content SID from Twilio's Content Template Builder: 'HX' "
            f"and 32 hex digits, not {text[:40]!r}"
        )
    return text


def is_public_https(url: str) -> bool:
    """Return whether url is an https:// base address, with no query or fragment."""
    public = urlsplit(url.strip())
    return (
        public.scheme == "https" and bool(public.hostname) and not (public.query or public.fragment)
    )


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


def _outbox(env: Mapping[str, str], mode: str) -> str:
    text = env.get("HELPLINE_OUTBOX", "").strip().lower()
    if text not in ("", "local", "twilio"):
        raise ConfigError(f"HELPLINE_OUTBOX must be 'local' or 'twilio', not {text[:20]!r}")
    if mode == "production" and text == "local":
        raise ConfigError(
            "HELPLINE_OUTBOX=local keeps texts and calls instead of sending them; "
            "production sends through Twilio: unset it"
        )
    if text:
        return text
    # Development without an account: keep what would be sent, rather than fail.
    return "local" if mode == "development" and not env.get("TWILIO_ACCOUNT_SID") else "twilio"


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in ("", "0", "no", "false"):
        return False
    if text in ("1", "yes", "true"):
        return True
    raise ConfigError(f"{name} must be 1 (yes) or 0 (no), not {text[:20]!r}")


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


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise ConfigError(f"{name} must be a whole number, 0 or more, not {text!r}")
    return int(text)


def _survey_delay(env: Mapping[str, str]) -> int:
    """HELPLINE_SURVEY_DELAY_MINUTES: whole minutes, at most a week; 0 turns surveys off."""
    name = "HELPLINE_SURVEY_DELAY_MINUTES"
    text = env.get(name, "").strip()
    if text and not text.isdigit():
        raise ConfigError(
            f"{name} must be a whole number of minutes (0 sends no surveys), not {text[:20]!r}"
        )
    minutes = int(text) if text else 60
    if minutes > SURVEY_MAX_DELAY_MINUTES:
        raise ConfigError(
            f"{name} must be at most {SURVEY_MAX_DELAY_MINUTES} (a week), not {minutes}:"
            " a survey long after the call is hard to answer"
        )
    return minutes


def _sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """Parse REDIS_SENTINELS: host:port, comma-separated ([v6::addr]:port for IPv6)."""
    found = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        host, _, port = part.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"REDIS_SENTINELS must be host:port pairs separated by commas, not {part!r}"
            )
        found.append((host, int(port)))
    return tuple(found)


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
