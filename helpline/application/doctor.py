"""`helpline doctor`: every check an operator would make before trusting a deployment.

Each check gives one finding: ok, a warning (allowed, but worth knowing) or a failure
(something callers would notice). Findings come one at a time, as each check ends, so
a slow one (exploring the flows, a Twilio request) shows what it is doing. Nothing is
changed: a Redis that is not running is reported, not started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import redis

from helpline.application.composition import Components, twilio_setup
from helpline.application.config import (
    Settings,
    is_public_https,
    load_settings,
    production_problems,
)
from helpline.application.readiness import State
from helpline.application.twilio_setup import SetupError
from helpline.conversation.explore import explore_all
from helpline.conversation.lint import inspect_flows
from helpline.infrastructure import embedded
from helpline.infrastructure.errors import HelplineError
from helpline.infrastructure.hours import DAYS, OpeningHours
from helpline.infrastructure.privacy import hide_password

# Seconds the doctor waits for Redis to connect or answer.
REDIS_TIMEOUT = 3.0


class Level(StrEnum):
    OK = "ok"
    WARN = "WARN"  # allowed, but worth knowing; does not fail the doctor
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    detail: str

    def line(self) -> str:
        return f"{self.level.value:<5} {self.check:<12} {self.detail}"


def ok(check: str, detail: str) -> Finding:
    return Finding(Level.OK, check, detail)


def warn(check: str, detail: str) -> Finding:
    return Finding(Level.WARN, check, detail)


def fail(check: str, detail: str) -> Finding:
    return Finding(Level.FAIL, check, detail)


# How a part's readiness reads as a finding.
_LEVELS = {State.OK: Level.OK, State.DEGRADED: Level.WARN, State.DOWN: Level.FAIL}


class Doctor:
    """Runs the checks against the environment it is given."""

    def __init__(self, environ: Mapping[str, str], clock: Callable[[], float] = time.time):
        self.environ = dict(environ)
        self.clock = clock

    def checks(self) -> Iterator[Finding]:
        """Yield each check's finding, in the order an operator fixes things."""
        try:
            settings = load_settings(self.environ, refuse_weak=False)
        except HelplineError as exc:
            yield fail("settings", f"{exc} (nothing else can be checked until this is fixed)")
            return
        yield ok("settings", _describe(settings))
        problems = production_problems(self.environ) if settings.production else {}
        yield self._secrets(settings, problems)
        yield self._public_url(settings, problems.get("PUBLIC_URL"))
        client, finding = self._redis(settings)
        yield finding
        parts = Components(settings, client) if client is not None else None
        yield self._persistence(client)
        yield from self._twilio(settings)
        yield from self._flows(settings)
        yield self._hours(settings)
        yield self._admins(parts)
        yield from self._workers(parts)
        if client is not None:
            client.close()

    # -- settings -------------------------------------------------------------------------

    def _secrets(self, settings: Settings, problems: dict[str, str]) -> Finding:
        if not settings.production:
            return ok(
                "secrets",
                "development: any not given are generated into "
                f"{settings.data_dir / 'dev-secrets.json'} (production needs its own)",
            )
        wrong = [problem for name, problem in problems.items() if name != "PUBLIC_URL"]
        if wrong:
            return fail("secrets", "; ".join(wrong))
        return ok("secrets", "every production secret is set and strong")

    def _public_url(self, settings: Settings, problem: str | None) -> Finding:
        url = settings.public_url
        if problem:
            return fail("public URL", problem)
        if not url:
            return ok(
                "public URL",
                "not set (development): signatures are checked against the address each "
                "request arrives at",
            )
        if not is_public_https(url):
            return warn("public URL", f"{hide_password(url)} is not https (allowed in development)")
        return ok("public URL", hide_password(url))

    # -- Redis ----------------------------------------------------------------------------

    def _redis(self, settings: Settings) -> tuple[redis.Redis | None, Finding]:
        url = settings.redis_url
        if not url:
            if not embedded.is_running(settings.data_dir):
                return None, fail(
                    "redis",
                    f"REDIS_URL is not set and the embedded Redis in {settings.data_dir} is not "
                    "running (`helpline serve` starts it)",
                )
            url = embedded.url_for(settings.data_dir)
        client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        try:
            version = client.info("server").get("redis_version", "?")
        except redis.RedisError as exc:
            client.close()
            return None, fail(
                "redis", f"cannot reach Redis at {hide_password(url)} ({type(exc).__name__})"
            )
        return client, ok("redis", f"Redis {version} answers at {hide_password(url)}")

    def _persistence(self, client: redis.Redis | None) -> Finding:
        if client is None:
            return fail("persistence", "cannot check: Redis is unreachable")
        try:
            info = client.info("persistence")
        except redis.RedisError as exc:
            return fail("persistence", f"cannot read Redis's persistence ({type(exc).__name__})")
        if not info.get("aof_enabled"):
            return fail(
                "persistence",
                "the append-only file is off: call back requests taken since the last snapshot "
                "are lost if Redis stops; set appendonly yes (with appendfsync always)",
            )
        if info.get("aof_last_write_status", "ok") != "ok":
            return fail("persistence", "Redis cannot write its append-only file (disk full?)")
        try:
            fsync = str(client.config_get("appendfsync").get("appendfsync", "?"))
        except redis.RedisError:
            return warn(
                "persistence",
                "append-only file on; appendfsync cannot be read here (CONFIG is not allowed): "
                "make sure it is always (or everysec)",
            )
        if fsync == "no":
            return warn(
                "persistence",
                "append-only file on, but appendfsync is no: the operating system decides when "
                "writes reach the disk, so a crash can lose confirmed call back requests; "
                "set appendfsync always",
            )
        if fsync == "everysec":
            return ok(
                "persistence",
                "append-only file on, appendfsync everysec (a crash can lose the last second)",
            )
        return ok("persistence", f"append-only file on, appendfsync {fsync}")

    # -- Twilio ---------------------------------------------------------------------------

    def _twilio(self, settings: Settings) -> Iterator[Finding]:
        if not settings.twilio_credentials:
            finding = fail if settings.production else warn
            yield finding(
                "twilio",
                "no credentials (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN): nothing can be texted "
                "or called",
            )
            return
        setup = twilio_setup(settings)
        sid = settings.twilio_account_sid
        try:
            friendly_name, status = setup.account()
        except SetupError as exc:
            yield fail("twilio", str(exc))
            return
        name = f"{sid} ({friendly_name})" if friendly_name else sid
        if status != "active":
            yield fail("twilio", f"the account {name} is {status}: Twilio sends nothing")
            return
        yield ok("twilio", f"the credentials work: account {name} is active")
        if not settings.public_url:
            yield warn("number", "PUBLIC_URL is not set, so the number's webhooks are not checked")
            return
        try:
            plan = setup.plan()
        except SetupError as exc:
            yield fail("number", str(exc))
            return
        if plan.changes:
            wrong = ", ".join(change.label for change in plan.changes)
            yield warn(
                "number",
                f"{len(plan.changes)} of {plan.number}'s settings do not point here ({wrong}): "
                "`helpline twilio configure` sets them",
            )
        else:
            base = hide_password(settings.public_url)
            yield ok("number", f"{plan.number}'s webhooks and callbacks point at {base}")

    # -- content and hours ----------------------------------------------------------------

    def _flows(self, settings: Settings) -> Iterator[Finding]:
        problems, library = inspect_flows(settings.flows_dir)
        if problems:
            yield fail(
                "flows",
                f"{len(problems)} problem(s) in {settings.flows_dir}, the first: {problems[0]} "
                "(`helpline flows check` lists them all)",
            )
            return
        report = explore_all(library)
        if report.problems:
            yield fail(
                "flows",
                f"{len(report.problems)} state(s) break a safety rule "
                "(`helpline flows check` shows them)",
            )
            return
        nodes = sum(len(f.nodes) for f in library.flows.values())
        yield ok(
            "flows",
            f"{len(library.flows)} flows, {nodes} nodes, languages "
            f"{', '.join(library.content.languages)}; {report.states:,} states explored, "
            "0 problems",
        )

    def _hours(self, settings: Settings) -> Finding:
        hours = OpeningHours.parse(settings.hours, settings.zone)  # parsed with the settings
        zone = settings.zone + ("" if settings.timezone else " (the region's)")
        if hours.windows is None:
            return ok("hours", f"call backs at any hour; time zone {zone}")
        now = datetime.fromtimestamp(self.clock(), UTC)
        opening = hours.next_opening(now)
        if hours.is_open(now):
            when = "open now"
        elif opening is None:
            return fail("hours", f"{settings.hours!r} never opens: no call back would be made")
        else:
            day = opening.day if not opening.day.isdigit() else DAYS[int(opening.day)].title()
            when = f"closed now; call backs resume {day} {opening.at:%H:%M}"
        return ok("hours", f"{settings.hours} in {zone}: {when}")

    # -- accounts and workers -------------------------------------------------------------

    def _admins(self, parts: Components | None) -> Finding:
        if parts is None:
            return fail("admins", "cannot check: Redis is unreachable")
        accounts = parts.counsellors.all()
        admins = [a for a in accounts if a.admin and not a.disabled]
        if not admins:
            return fail(
                "admins",
                "no admin account: create one with `helpline counsellor add USERNAME --name NAME "
                "--phone E164 --admin`",
            )
        return ok("admins", f"{_count(len(admins), 'admin')}, {_count(len(accounts), 'account')}")

    def _workers(self, parts: Components | None) -> Iterator[Finding]:
        if parts is None:
            yield fail("workers", "cannot check: Redis is unreachable")
            yield fail("scheduler", "cannot check: Redis is unreachable")
            return
        report = parts.readiness.check()
        for name, check in (("workers", report.workers), ("scheduler", report.scheduler)):
            yield Finding(_LEVELS[check.state], name, check.detail)


def _describe(settings: Settings) -> str:
    data = "REDIS_URL" if settings.redis_url else f"embedded Redis in {settings.data_dir}"
    return (
        f"{settings.env}, region {settings.region.code}, flows {settings.flows_dir}, Redis: {data}"
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def summary(findings: list[Finding]) -> str:
    """The last line: how many checks failed and warned."""
    failed = sum(f.level is Level.FAIL for f in findings)
    warned = sum(f.level is Level.WARN for f in findings)
    verdict = "fix the FAIL lines" if failed else "nothing failed"
    return (
        f"{_count(len(findings), 'check')}: {failed} failed, {_count(warned, 'warning')}; {verdict}"
    )
