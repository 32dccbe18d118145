"""The report counters: one Redis hash of counts per local day, and nothing per person.

Things are counted at the moment they happen, in the Redis round trip the code that sees
them already makes (a text's write, a call's rate-limit count, a request's enqueue), so
counting costs no extra trip:

    helpline:reports:<YYYY-MM-DD>   measure -> count, for that day in the helpline's zone

A measure is a short field name ("contacts:sms", "survey:4"); the reports page and CSV
turn them into tables and charts. Nothing in a field or a value names a caller.

What happens where no write is made (a call's later steps, a fail-safe answer) waits in
a small per-process buffer (Pending) and goes with the next write this process makes, or
on its own within REPORT_FLUSH_SECONDS (10 s): the counts of those last seconds are lost
if the process is killed, never a request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

from helpline.infrastructure.constants import KEY_PREFIX, REPORT_FLUSH_SECONDS

REPORTS_PREFIX = f"{KEY_PREFIX}:reports"
# Kept long enough for a year-on-year look back, then dropped by Redis itself.
KEPT_SECONDS = 400 * 24 * 60 * 60

# -- measures (field names in a day's hash) ---------------------------------------------

# A new contact, by channel ("voice", "sms", "whatsapp"): a call, or a text that starts
# a conversation (none kept for the sender).
CONTACTS = "contacts:"
CHANNELS = ("voice", "sms", "whatsapp")
# A topic chosen from a menu or by a keyword, whichever channel (conversation.model.TOPICS).
TOPIC = "topic:"
# A crisis reply (the emergency advice, or the self-harm answer), by channel.
CRISIS = "crisis:"
# The call back funnel: asked for (a new request), made urgent (when made, or later),
# reached, closed after the last unanswered try, expired unanswered, given back.
CALLBACK_REQUESTED = "callback:requested"
CALLBACK_URGENT = "callback:urgent"
CALLBACK_REACHED = "callback:reached"
CALLBACK_NO_ANSWER = "callback:no_answer"
CALLBACK_EXPIRED = "callback:expired"
CALLBACK_RELEASED = "callback:released"
FUNNEL = (
    CALLBACK_REQUESTED,
    CALLBACK_URGENT,
    CALLBACK_REACHED,
    CALLBACK_NO_ANSWER,
    CALLBACK_EXPIRED,
    CALLBACK_RELEASED,
)
# Waiting time, from a request's making to a counsellor first taking it: "wait:<le>"
# counts waits of at most <le> minutes (and more than the bucket below); "wait:inf" the
# rest. "waitw:<d><hh>:<le>" the same by hour of week (d: 0 = Monday, local time), filed
# under the day and hour the wait ended.
WAIT = "wait:"
WAIT_WEEK = "waitw:"
WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 1440, 2880)
# Check-ins: booked, put off by the caller (key 2), escalated to the counsellors, and
# each close by its outcome ("checkin:outcome:ok_key"...).
CHECKIN_STARTED = "checkin:started"
CHECKIN_EXTENDED = "checkin:extended"
CHECKIN_ESCALATED = "checkin:escalated"
CHECKIN_OUTCOME = "checkin:outcome:"
# Outcomes that mean the caller said they were OK (by key on the call, or by text).
CHECKIN_OK_OUTCOMES = ("ok_key", "ok_text")
# The follow-up survey (written by its own code): texts sent, and replies by score.
SURVEY_SENT = "survey:sent"
SURVEY_SCORES = tuple(f"survey:{n}" for n in range(1, 6))
# Fail-safe answers: after an error or from Twilio's fallback URL ("failsafe:error"), or
# to someone over the rate limit ("failsafe:limit"). Opt-outs by channel.
FAILSAFE = "failsafe:"
OPT_OUT = "optout:"


def contacts(channel: str) -> str:
    return CONTACTS + channel


def topic(name: str) -> str:
    return TOPIC + name


def crisis(channel: str) -> str:
    return CRISIS + channel


def opt_out(channel: str) -> str:
    return OPT_OUT + channel


# -- writing ------------------------------------------------------------------------------


def day_key(day: date) -> str:
    """The hash of one day's counts."""
    return f"{REPORTS_PREFIX}:{day.isoformat()}"


def local_day(zone: ZoneInfo, now: datetime | None = None) -> date:
    """Today (or now's day) in the helpline's own time zone: the day a manager reads it as."""
    return (now or datetime.now(zone)).astimezone(zone).date()


def today_key(zone: ZoneInfo, at: float | None = None) -> str:
    """The hash of the day `at` (a Unix time; default now) falls on in the helpline's zone."""
    now = datetime.fromtimestamp(at, zone) if at is not None else None
    return day_key(local_day(zone, now))


def hour_of_week(zone: ZoneInfo, at: float) -> str:
    """The local weekday and hour of a Unix time, as a field part: "009" is Monday 09:00."""
    local = datetime.fromtimestamp(at, zone)
    return f"{local.weekday()}{local.hour:02d}"


def count(pipe, zone: ZoneInfo, measure: str, by: int = 1, now: datetime | None = None) -> None:
    """Add `by` to today's `measure` on a pipeline the caller already sends.

    Queues two commands and sends nothing: the caller's own execute() carries them.
    """
    key = day_key(local_day(zone, now))
    pipe.hincrby(key, measure, by)
    pipe.expire(key, KEPT_SECONDS)


UTC = ZoneInfo("UTC")
# The measures scripts count, by the same names in Lua.
_LUA_NAMES = {
    "CALLBACK_REQUESTED": CALLBACK_REQUESTED,
    "CALLBACK_URGENT": CALLBACK_URGENT,
    "CALLBACK_EXPIRED": CALLBACK_EXPIRED,
    "CHECKIN_STARTED": CHECKIN_STARTED,
    "CHECKIN_EXTENDED": CHECKIN_EXTENDED,
    "CHECKIN_ESCALATED": CHECKIN_ESCALATED,
    "CHECKIN_OUTCOME": CHECKIN_OUTCOME,
}


def lua(report_key: str = "KEYS[1]") -> str:
    """Lua for scripts that count as they change things: tally(field[, by]) and
    tally_wait(seconds, hour of week), adding to the hash named by report_key (today's,
    see today_key), or to nothing where that is absent."""
    names = "".join(f"local {name} = '{value}'\n" for name, value in _LUA_NAMES.items())
    return f"""
local report_key = {report_key}
{names}local function tally(field, by)
  by = by or 1
  if report_key and field ~= '' and by > 0 then
    redis.call('HINCRBY', report_key, field, by)
    redis.call('EXPIRE', report_key, {KEPT_SECONDS})
  end
end
local function tally_wait(seconds, week_hour)
  local bucket = 'inf'
  for _, le in ipairs({{{", ".join(str(b) for b in WAIT_BUCKETS)}}}) do
    if seconds <= le * 60 then bucket = tostring(le); break end
  end
  tally('{WAIT}' .. bucket)
  tally('{WAIT_WEEK}' .. week_hour .. ':' .. bucket)
end
"""


class Pending:
    """Counts seen where no Redis write is made, until the next write this process makes.

    add() never touches Redis. drain() queues what is waiting on a pipeline the caller
    sends anyway; when nothing does within flush_seconds, a timer sends them on their own
    (through `send`, which must not raise; flush_seconds 0: no timer). A process killed
    before either loses those seconds' counts.
    """

    def __init__(
        self,
        zone: ZoneInfo,
        send: Callable[[Callable[[Any], None]], None] | None = None,
        *,
        flush_seconds: float = REPORT_FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.zone = zone
        self.clock = clock
        self.send = send
        self.flush_seconds = flush_seconds
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._today = ("", 0.0)  # today's hash, and when the day ends

    def today(self) -> str:
        """Today's hash; worked out once a day, not on every count."""
        key, ends = self._today
        now = self.clock()
        if now >= ends:
            local = datetime.fromtimestamp(now, self.zone)
            midnight = datetime.combine(local.date() + timedelta(1), dt_time(), self.zone)
            key, ends = day_key(local.date()), midnight.timestamp()
            self._today = (key, ends)
        return key

    def count(self, pipe, measures: Iterable[str]) -> None:
        """Add one to each of today's measures on a pipeline the caller already sends."""
        key = self.today()
        for measure in measures:
            pipe.hincrby(key, measure, 1)
        pipe.expire(key, KEPT_SECONDS)

    def add(self, measure: str, by: int = 1) -> None:
        """Count one now; it reaches Redis with the next write."""
        key = self.today()
        with self._lock:
            self._counts[(key, measure)] += by
            if self.send is not None and self.flush_seconds > 0 and self._timer is None:
                self._timer = threading.Timer(self.flush_seconds, self._flush)
                self._timer.daemon = True
                self._timer.start()

    def __bool__(self) -> bool:
        return bool(self._counts)

    def drain(self, pipe) -> None:
        """Queue every waiting count on pipe (sent by its caller) and forget them here."""
        if not self._counts:
            return
        with self._lock:
            taken, self._counts = self._counts, Counter()
        for (key, measure), by in taken.items():
            pipe.hincrby(key, measure, by)
        for key in {key for key, _ in taken}:
            pipe.expire(key, KEPT_SECONDS)

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
        if self._counts and self.send is not None:
            self.send(self.drain)


# -- reading ------------------------------------------------------------------------------


def days(first: date, last: date) -> list[date]:
    """Every day from first to last, both included."""
    return [first + timedelta(n) for n in range((last - first).days + 1)]


def read(client, first: date, last: date) -> dict[date, dict[str, int]]:
    """Return each day's counts from first to last, in one pipelined round trip."""
    span = days(first, last)
    pipe = client.pipeline(transaction=False)
    for day in span:
        pipe.hgetall(day_key(day))
    found = pipe.execute()
    return {
        day: {_text(k): int(v) for k, v in raw.items()}
        for day, raw in zip(span, found, strict=True)
    }


def total(counts: Iterable[Mapping[str, int]], measure: str) -> int:
    """The sum of one measure over many days."""
    return sum(day.get(measure, 0) for day in counts)


def wait_buckets(counts: Mapping[str, int], prefix: str = WAIT) -> list[int]:
    """Counts per waiting-time bucket (WAIT_BUCKETS, then the open-ended one)."""
    return [counts.get(f"{prefix}{le}", 0) for le in (*WAIT_BUCKETS, "inf")]


def quantile(buckets: list[int], q: float) -> float | None:
    """The wait (minutes) at or below which a fraction q of waits fell, from bucket counts.

    Returns the upper bound of the bucket holding the q-th wait: "at most this long", the
    honest reading of counts with no per-person record. inf: beyond the last bucket;
    None: no waits at all.
    """
    seen = sum(buckets)
    if not seen:
        return None
    rank = q * seen
    running = 0
    for le, n in zip((*WAIT_BUCKETS, float("inf")), buckets, strict=True):
        running += n
        if n and running >= rank:
            return float(le)
    return float("inf")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
