"""The report counters: one Redis hash of counts per local day, and nothing per person.

Things are counted at the moment they happen, in the Redis round trip the code that sees
them already makes (a text's write, a call's rate-limit count, a request's enqueue), so
counting costs no extra trip:

    helpline:reports:<YYYY-MM-DD>   measure -> count, for that day in the helpline's zone

A measure is a short field name ("contacts:sms", "survey:4"); the reports page and CSV
turn them into tables and charts. Nothing in a field or a value names a caller.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from helpline.infrastructure.constants import KEY_PREFIX

REPORTS_PREFIX = f"{KEY_PREFIX}:reports"
# Kept long enough for a year-on-year look back, then dropped by Redis itself.
KEPT_SECONDS = 400 * 24 * 60 * 60


def day_key(day: date) -> str:
    """The hash of one day's counts."""
    return f"{REPORTS_PREFIX}:{day.isoformat()}"


def local_day(zone: ZoneInfo, now: datetime | None = None) -> date:
    """Today (or now's day) in the helpline's own time zone: the day a manager reads it as."""
    return (now or datetime.now(zone)).astimezone(zone).date()


def count(pipe, zone: ZoneInfo, measure: str, by: int = 1, now: datetime | None = None) -> None:
    """Add `by` to today's `measure` on a pipeline the caller already sends.

    Queues two commands and sends nothing: the caller's own execute() carries them.
    """
    key = day_key(local_day(zone, now))
    pipe.hincrby(key, measure, by)
    pipe.expire(key, KEPT_SECONDS)
