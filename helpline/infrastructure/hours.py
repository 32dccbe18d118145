"""When counsellors are on duty: opening hours from configuration.

    HELPLINE_HOURS="Mon-Fri 09:00-21:00; Sat,Sun 10:00-16:00"   (HELPLINE_TIMEZONE for the zone)
    HELPLINE_HOURS="always"                                       (the default)

Out of hours, callers are still queued and told when call backs resume.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from helpline.infrastructure.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE = re.compile(r"^(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$")


@dataclass(frozen=True)
class Opening:
    """When call backs resume: the moment, and how to say the day relative to now."""

    at: datetime
    day: str  # "today", "tomorrow", or "0".."6" (Monday..Sunday)


class OpeningHours:
    """Weekly opening windows in one time zone; 'always' means always open."""

    def __init__(self, windows: dict[int, list[tuple[time, time]]] | None, zone: ZoneInfo):
        self.windows = windows  # None: always open
        self.zone = zone

    @classmethod
    def parse(cls, spec: str, zone_name: str) -> OpeningHours:
        """Parse an HELPLINE_HOURS value, or raise ConfigError saying what to fix."""
        try:
            zone = ZoneInfo(zone_name)
        except (KeyError, ValueError):
            raise ConfigError(f"HELPLINE_TIMEZONE {zone_name!r} is not a known time zone") from None
        text = spec.strip().lower()
        if text in ("", "always", "24/7"):
            return cls(None, zone)
        windows: dict[int, list[tuple[time, time]]] = {n: [] for n in range(7)}
        for rule in filter(None, (part.strip() for part in text.split(";"))):
            match = _RULE.match(rule)
            if not match:
                raise ConfigError(
                    f"HELPLINE_HOURS rule {rule!r} should look like 'Mon-Fri 09:00-21:00'"
                )
            start, end = _clock(match["start"], rule), _clock(match["end"], rule)
            if end <= start:
                raise ConfigError(f"HELPLINE_HOURS rule {rule!r} ends before it starts")
            for day in _days(match["days"], rule):
                windows[day].append((start, end))
        return cls(windows, zone)

    def describe(self) -> str:
        """The hours as people read them: "Mon-Fri 09:00-21:00; Sat-Sun 10:00-16:00"."""
        if self.windows is None:
            return "always"
        names = [day.title() for day in DAYS]
        spans: list[tuple[int, int, str]] = []  # first day, last day, their times
        for day in range(7):
            times = ", ".join(
                f"{start:%H:%M}-{'24:00' if end == time.max else f'{end:%H:%M}'}"
                for start, end in sorted(self.windows[day])
            )
            if spans and spans[-1][2] == times and spans[-1][1] == day - 1:
                spans[-1] = (spans[-1][0], day, times)
            else:
                spans.append((day, day, times))
        parts = [
            f"{names[first]}{'' if first == last else '-' + names[last]} {times}"
            for first, last, times in spans
            if times
        ]
        return "; ".join(parts) or "never"

    def is_open(self, moment: datetime) -> bool:
        """Return True if counsellors are on duty at moment."""
        if self.windows is None:
            return True
        local = moment.astimezone(self.zone)
        now = local.time()
        return any(start <= now < end for start, end in self.windows[local.weekday()])

    def next_opening(self, moment: datetime) -> Opening | None:
        """Return when call backs next resume after moment; None if open now or never."""
        if self.windows is None or self.is_open(moment):
            return None
        local = moment.astimezone(self.zone)
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            for start, _ in sorted(self.windows[day.weekday()]):
                at = datetime.combine(day, start, self.zone)
                if at > local:
                    label = {0: "today", 1: "tomorrow"}.get(ahead, str(day.weekday()))
                    return Opening(at=at, day=label)
        return None


def _clock(text: str, rule: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ConfigError(f"HELPLINE_HOURS rule {rule!r} has an impossible time {text!r}")
    return time(hours, minutes)


def _days(text: str, rule: str) -> list[int]:
    days: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            a = DAYS.index(first[:3])
            b = DAYS.index(last[:3]) if last else a
        except ValueError:
            raise ConfigError(
                f"HELPLINE_HOURS rule {rule!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun"
            ) from None
        days.extend(DAYS.index(d) for d in (DAYS * 2)[a : a + (b - a) % 7 + 1])
    return days
