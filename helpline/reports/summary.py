"""What the reports page and CSV show, worked out from the days' counts (tally.read).

Small numbers can identify people: every count under SMALL is shown as "<5", on the page
and in the CSV, and a median or 90th percentile of fewer than SMALL waits is not shown.
A count of 0 reveals nobody and is shown as 0 on the page; the CSV leaves it out (a
measure with no count on a day has no row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from helpline.conversation.model import TOPICS
from helpline.reports import tally

SMALL = 5
# The longest range one report reads: about the time the counts are kept.
MAX_DAYS = 400
DEFAULT_DAYS = 30
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Days = Mapping[date, Mapping[str, int]]


def shown(count: int) -> str:
    """A count as it may be shown: under SMALL (but not 0) is "<5"."""
    return f"<{SMALL}" if 0 < count < SMALL else str(count)


def visible(count: int) -> int:
    """A count as a chart may draw it: a small one is drawn as nothing."""
    return 0 if count < SMALL else count


@dataclass(frozen=True)
class Row:
    label: str
    values: tuple[int, ...]

    @property
    def shown(self) -> tuple[str, ...]:
        return tuple(shown(v) for v in self.values)


@dataclass(frozen=True)
class Table:
    """One table of counts (and the chart drawn from it): rows of labelled values."""

    id: str
    title: str
    row_header: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    by_day: bool  # rows are days (a chart of bars over time) or kinds (bars side by side)


@dataclass(frozen=True)
class Waits:
    """Waiting time (minutes) of one day or hour of week: None where too few to show."""

    label: str
    waits: int
    median: float | None
    p90: float | None


def per_day(days: Days, table_id: str, title: str, columns: Mapping[str, str]) -> Table:
    """Days as rows, the given measures (measure -> column heading) as columns."""
    rows = tuple(
        Row(day.isoformat(), tuple(counts.get(m, 0) for m in columns))
        for day, counts in sorted(days.items())
    )
    return Table(table_id, title, "Day", tuple(columns.values()), rows, by_day=True)


def totals(days: Days, table_id: str, title: str, kinds: Mapping[str, str]) -> Table:
    """One row per measure (measure -> row label): its total over the days."""
    counts = list(days.values())
    rows = tuple(Row(label, (tally.total(counts, m),)) for m, label in kinds.items())
    return Table(table_id, title, "What", ("Count",), rows, by_day=False)


def _waits(label: str, buckets: list[int]) -> Waits:
    seen = sum(buckets)
    if seen < SMALL:
        return Waits(label, seen, None, None)
    return Waits(label, seen, tally.quantile(buckets, 0.5), tally.quantile(buckets, 0.9))


def waits_by_day(days: Days) -> list[Waits]:
    """Median and 90th percentile wait of each day."""
    return [_waits(day.isoformat(), tally.wait_buckets(c)) for day, c in sorted(days.items())]


def waits_by_hour_of_week(days: Days) -> list[Waits]:
    """Median and 90th percentile wait of each hour of the week (local), over the days."""
    found = []
    for weekday in range(7):
        for hour in range(24):
            prefix = f"{tally.WAIT_WEEK}{weekday}{hour:02d}:"
            buckets = [0] * (len(tally.WAIT_BUCKETS) + 1)
            for counts in days.values():
                for i, n in enumerate(tally.wait_buckets(counts, prefix)):
                    buckets[i] += n
            found.append(_waits(f"{WEEKDAYS[weekday]} {hour:02d}:00", buckets))
    return found


def minutes(value: float | None) -> str:
    """A wait as the page says it: "≤ 5 min", "over 2 days", or "-" (too few)."""
    if value is None:
        return "-"
    if value == float("inf"):
        return f"over {tally.WAIT_BUCKETS[-1] // 60 // 24} days"
    if value >= 120:
        return f"≤ {value / 60:g} h"
    return f"≤ {value:g} min"


CHANNEL_NAMES = {"voice": "Calls", "sms": "Texts", "whatsapp": "WhatsApp"}
TOPIC_NAMES = {
    "safety": "Overdose safety",
    "recovery": "Recovery",
    "someone_else": "Someone else",
    "callback": "Call back",
    "checkin": "Check-in",
}
FUNNEL_NAMES = {
    tally.CALLBACK_REQUESTED: "Requested",
    tally.CALLBACK_URGENT: "Urgent",
    tally.CALLBACK_REACHED: "Reached",
    tally.CALLBACK_NO_ANSWER: "No answer",
    tally.CALLBACK_EXPIRED: "Expired",
    tally.CALLBACK_RELEASED: "Released",
}
# Fail-safe answers after an error (or from Twilio's fallback URL), and over the rate limit.
FAILSAFE_NAMES = {
    tally.FAILSAFE + "error": "Fail-safe: error",
    tally.FAILSAFE + "limit": "Fail-safe: over limit",
    tally.opt_out("sms"): "Opt-outs by SMS",
    tally.opt_out("whatsapp"): "Opt-outs by WhatsApp",
}


def checkins(days: Days) -> Table:
    """Check-ins: started, OK, extended, escalated, then each outcome seen."""
    outcomes = sorted(
        {m for counts in days.values() for m in counts if m.startswith(tally.CHECKIN_OUTCOME)}
    )
    counts = list(days.values())
    ok = sum(tally.total(counts, tally.CHECKIN_OUTCOME + o) for o in tally.CHECKIN_OK_OUTCOMES)
    rows = [
        Row("Started", (tally.total(counts, tally.CHECKIN_STARTED),)),
        Row("OK", (ok,)),
        Row("Extended", (tally.total(counts, tally.CHECKIN_EXTENDED),)),
        Row("Escalated", (tally.total(counts, tally.CHECKIN_ESCALATED),)),
    ]
    rows += [
        Row("Outcome: " + m.removeprefix(tally.CHECKIN_OUTCOME).replace("_", " "), (n,))
        for m in outcomes
        if (n := tally.total(counts, m))
    ]
    return Table("checkins", "Check-ins", "What", ("Count",), tuple(rows), by_day=False)


def tables(days: Days) -> list[Table]:
    """Every table of the report, in the page's order."""
    channels = {tally.contacts(c): name for c, name in CHANNEL_NAMES.items()}
    crises = {tally.crisis(c): name for c, name in CHANNEL_NAMES.items()}
    scores = {f"survey:{n}": f"Score {n}" for n in range(1, 6)}
    return [
        per_day(days, "contacts", "Contacts per day by channel", channels),
        totals(days, "topics", "Topics chosen", {tally.topic(t): TOPIC_NAMES[t] for t in TOPICS}),
        per_day(days, "crisis", "Crisis replies per day by channel", crises),
        totals(days, "funnel", "Call backs", FUNNEL_NAMES),
        checkins(days),
        totals(days, "survey", "Survey scores", {tally.SURVEY_SENT: "Surveys sent", **scores}),
        totals(days, "failsafe", "Fail-safe answers and opt-outs", FAILSAFE_NAMES),
    ]


def csv_rows(days: Days) -> list[tuple[str, str, str]]:
    """(date, measure, count) for every measure counted on each day, small counts as "<5"."""
    return [
        (day.isoformat(), measure, shown(n))
        for day, counts in sorted(days.items())
        for measure, n in sorted(counts.items())
        if n
    ]
