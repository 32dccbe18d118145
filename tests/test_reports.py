"""The admins' reports: counted as things happen, shown with small numbers hidden."""

from __future__ import annotations

import html
from datetime import date, datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient

from helpline.callbacks.queue import CallbackQueue, Contact, Outcome
from helpline.checkins.sessions import CheckinSessions
from helpline.infrastructure.constants import KEY_PREFIX
from helpline.infrastructure.crypto import Sealer, lookup_key
from helpline.reports import tally
from helpline.reports.summary import minutes, waits_by_day
from helpline.web.services import helpline
from tests.console_helpers import add_counsellor, enqueue, login, post
from tests.factories import (
    SECRET_KEY,
    Call,
    FakeClock,
    call_params,
    callback_number,
    text,
    twilio_post,
    wait_until,
)

LONDON = ZoneInfo("Europe/London")


def today() -> date:
    return tally.local_day(LONDON)


def counted(redis: redis_py.Redis, day: date | None = None) -> dict[str, int]:
    raw = redis.hgetall(tally.day_key(day or today()))
    return {k.decode(): int(v) for k, v in raw.items()}


class Tables(HTMLParser):
    """The page's tables by id: each a list of rows, each a list of cell texts."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._in_body = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def admin_client(app: Flask) -> FlaskClient:
    add_counsellor(app, "sam", admin=True)
    client = app.test_client()
    login(client, "sam")
    return client


# -- reading counts ---------------------------------------------------------------------


def test_median_and_90th_percentile_come_from_bucket_counts():
    buckets = [0] * (len(tally.WAIT_BUCKETS) + 1)
    buckets[tally.WAIT_BUCKETS.index(1)] = 5  # five waits of at most a minute
    buckets[tally.WAIT_BUCKETS.index(5)] = 3  # three of 2 to 5 minutes
    buckets[tally.WAIT_BUCKETS.index(30)] = 2  # two of 21 to 30 minutes
    assert tally.quantile(buckets, 0.5) == 1
    assert tally.quantile(buckets, 0.8) == 5
    assert tally.quantile(buckets, 0.9) == 30
    buckets[-1] = 10  # ten more beyond the last bucket
    assert tally.quantile(buckets, 0.5) == 30
    assert tally.quantile(buckets, 0.9) == float("inf")
    assert tally.quantile([0] * len(buckets), 0.5) is None
    assert minutes(float("inf")) == "over 2 days"
    assert minutes(30.0) == "≤ 30 min"
    assert minutes(180.0) == "≤ 3 h"


def test_a_days_median_is_hidden_below_five_waits():
    day = date(2026, 3, 2)
    few = {day: {"wait:5": 4}}
    assert [(w.waits, w.median, w.p90) for w in waits_by_day(few)] == [(4, None, None)]
    enough = {day: {"wait:5": 4, "wait:60": 1}}
    assert [(w.waits, w.median, w.p90) for w in waits_by_day(enough)] == [(5, 5, 60)]


# -- counting as things happen ----------------------------------------------------------


def test_a_call_step_makes_no_redis_call_and_its_counts_go_with_the_next_call(client, redis):
    call = Call(client, sender=callback_number(1))
    redis.config_resetstat()
    recovery = call.press("2")
    used = {
        name: stats["calls"]
        for name, stats in redis.info("commandstats").items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }
    assert used == {}
    assert "node=recovery" in recovery.action
    # A crisis step looks for the caller's open call back to make it urgent (as before);
    # its count waits with the topic's.
    assert "call 9 9 9" in call.say("he is not breathing").text
    assert counted(redis) == {"contacts:voice": 1}

    Call(client, sender=callback_number(2))  # the next call's rate-limit count carries them
    assert counted(redis) == {"contacts:voice": 2, "topic:recovery": 1, "crisis:voice": 1}


def test_counts_with_no_write_to_ride_on_are_sent_on_their_own_within_the_flush_time(redis):
    def send(drain):
        pipe = redis.pipeline(transaction=False)
        drain(pipe)
        pipe.execute()

    pending = tally.Pending(LONDON, send, flush_seconds=0.05)
    pending.add(tally.FAILSAFE + "error")
    pending.add(tally.FAILSAFE + "error")
    wait_until(lambda: counted(redis) == {"failsafe:error": 2}, what="the timer's flush")
    assert redis.ttl(tally.day_key(today())) > 399 * 24 * 3600


def test_counts_go_to_the_local_day_they_happen_on_across_midnight_and_summer_time():
    clock = FakeClock(datetime(2026, 3, 28, 23, 59, 59, tzinfo=LONDON).timestamp())
    pending = tally.Pending(LONDON, clock=clock)
    assert pending.today() == tally.day_key(date(2026, 3, 28))
    clock.advance(2)
    assert pending.today() == tally.day_key(date(2026, 3, 29))
    clock.advance(23 * 3600 - 1)  # the clocks went forward: 23 hours later is the 30th
    assert pending.today() == tally.day_key(date(2026, 3, 30))


def test_the_call_back_funnel_and_one_wait_per_request_are_counted_in_the_queues_scripts(redis):
    clock = FakeClock(datetime(2026, 3, 2, 9, 30, tzinfo=LONDON).timestamp())  # a Monday
    queue = CallbackQueue(
        redis, Sealer(SECRET_KEY), lookup_key(SECRET_KEY), clock=clock, zone=LONDON
    )

    def ask(n: int, *, urgent: bool = False) -> str:
        contact = Contact(callback_number(n), voicemail_ok=True, texts_ok=True)
        return queue.enqueue(contact, channel="sms", lang="en", urgent=urgent).request.id

    first = ask(1)
    assert ask(1) == first  # asking again: the same request
    queue.escalate(callback_number(1))  # a crisis phrase: now urgent
    clock.advance(1)
    ask(2, urgent=True)
    clock.advance(7 * 60)
    claimed = queue.claim_next("alex")
    assert claimed is not None and claimed.id == first
    queue.release(claimed.id, "alex")
    again = queue.claim_next("alex")  # the same request: its wait was counted already
    assert again is not None and again.id == first
    queue.record(again.id, "alex", Outcome.REACHED)
    clock.advance(80 * 3600)
    assert queue.expire(72 * 3600) != []
    day = date(2026, 3, 2)
    later = date(2026, 3, 5)
    assert counted(redis, day) == {
        "callback:requested": 2,
        "callback:urgent": 2,
        "callback:released": 1,
        "callback:reached": 1,
        "wait:10": 1,
        "waitw:009:10": 1,
    }
    assert counted(redis, later) == {"callback:expired": 1}


def test_check_ins_are_counted_as_they_start_extend_escalate_and_close(redis):
    clock = FakeClock(datetime(2026, 3, 2, 22, 0, tzinfo=LONDON).timestamp())
    sessions = CheckinSessions(
        redis, Sealer(SECRET_KEY), lookup_key(SECRET_KEY), clock=clock, zone=LONDON
    )
    _, first = sessions.book(
        callback_number(1), minutes=10, due=clock() + 600, lang="en", channel="sms"
    )
    assert sessions.extend(first, 0, seconds=600, most=2) == "extended"
    sessions.close(first, "ok_text")
    _, second = sessions.book(
        callback_number(2), minutes=10, due=clock() - 1, lang="en", channel="voice"
    )
    sessions.claim_due(max_tries=0, realert_seconds=60)  # no tries left: escalated
    assert counted(redis, date(2026, 3, 2)) == {
        "checkin:started": 2,
        "checkin:extended": 1,
        "checkin:outcome:ok_text": 1,
        "checkin:escalated": 1,
    }


# -- the page and the CSV ---------------------------------------------------------------


@pytest.fixture
def traffic(app: Flask, client: FlaskClient, redis: redis_py.Redis) -> None:
    """3 calls (one chooses recovery), 7 texted conversations (all ask for SAFE; 2 then
    say someone is not breathing), 1 WhatsApp conversation, 2 call backs (1 urgent): one
    reached, one given back to the queue."""
    Call(client, sender=callback_number(1)).press("2")
    Call(client, sender=callback_number(2))
    Call(client, sender=callback_number(3))
    for n in range(7):
        text(client, "SAFE", sender=callback_number(10 + n))
    for n in range(2):
        text(client, "he is not breathing", sender=callback_number(10 + n))
    text(client, "hi", sender="whatsapp:" + callback_number(20))
    enqueue(app, 30, urgent=True)
    enqueue(app, 31)
    add_counsellor(app, "alex")
    counsellor = app.test_client()
    login(counsellor, "alex")
    first = helpline_queue(app).claim_next("alex")
    assert first is not None
    post(counsellor, f"/console/requests/{first.id}/outcome", {"outcome": "reached"})
    second = helpline_queue(app).claim_next("alex")
    assert second is not None
    post(counsellor, f"/console/requests/{second.id}/release")


def helpline_queue(app: Flask) -> CallbackQueue:
    with app.app_context():
        return helpline().queue


@pytest.mark.usefixtures("traffic")
def test_the_reports_page_shows_the_traffic_with_small_counts_hidden(app, redis):
    page = admin_client(app).get("/console/admin/reports")
    assert page.status_code == 200
    tables = Tables(page.get_data(as_text=True)).tables
    day = today().isoformat()
    contacts = tables["table-contacts"]
    assert len(contacts) == 30 and contacts[-1] == [day, "<5", "7", "<5"]
    assert all(row[1:] == ["0", "0", "0"] for row in contacts[:-1])
    assert tables["table-topics"] == [
        ["Overdose safety", "7"],
        ["Recovery", "<5"],
        ["Someone else", "0"],
        ["Call back", "0"],
        ["Check-in", "0"],
    ]
    assert tables["table-crisis"][-1] == [day, "0", "<5", "0"]
    assert tables["table-funnel"] == [
        ["Requested", "<5"],
        ["Urgent", "<5"],
        ["Reached", "<5"],
        ["No answer", "0"],
        ["Expired", "0"],
        ["Released", "<5"],
    ]
    assert tables["table-waits-day"][-1] == [day, "<5", "-", "-"]
    assert tables["table-checkins"][:4] == [
        ["Started", "0"],
        ["OK", "0"],
        ["Extended", "0"],
        ["Escalated", "0"],
    ]
    assert tables["table-failsafe"] == [
        ["Fail-safe: error", "0"],
        ["Fail-safe: over limit", "0"],
        ["Opt-outs by SMS", "0"],
        ["Opt-outs by WhatsApp", "0"],
    ]
    body = page.get_data(as_text=True)
    assert body.count("<svg") >= 9 and 'viewBox="0 0 320' in body
    assert "<caption>Contacts per day by channel" in body


@pytest.mark.usefixtures("traffic")
def test_the_reports_csv_has_one_row_per_day_per_measure_with_small_counts_hidden(app):
    day = today().isoformat()
    response = admin_client(app).get(f"/console/admin/reports.csv?from={day}&to={day}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = response.get_data(as_text=True).splitlines()
    week_hour = tally.hour_of_week(LONDON, datetime.now(LONDON).timestamp())
    assert rows == [
        "date,measure,count",
        f"{day},callback:reached,<5",
        f"{day},callback:released,<5",
        f"{day},callback:requested,<5",
        f"{day},callback:urgent,<5",
        f"{day},contacts:sms,7",
        f"{day},contacts:voice,<5",
        f"{day},contacts:whatsapp,<5",
        f"{day},crisis:sms,<5",
        f"{day},topic:recovery,<5",
        f"{day},topic:safety,7",
        f"{day},wait:1,<5",
        f"{day},waitw:{week_hour}:1,<5",
    ]


@pytest.mark.parametrize(
    "query, message",
    [
        ("from=2026-13-01", "'from' is not a date on the calendar: 2026-13-01."),
        ("to=yesterday", "'to' must be a date written as YYYY-MM-DD"),
        ("from=2026-03-02&to=2026-03-01", "'from' must not be after 'to'."),
        ("from=2025-01-01&to=2026-03-01", "A report covers at most 400 days"),
    ],
)
def test_dates_that_cannot_be_reported_on_get_a_clear_message(app, query, message):
    admin = admin_client(app)
    page = admin.get(f"/console/admin/reports?{query}")
    assert page.status_code == 400 and message in html.unescape(page.get_data(as_text=True))
    sheet = admin.get(f"/console/admin/reports.csv?{query}")
    assert sheet.status_code == 400 and message in sheet.get_data(as_text=True)


def test_the_csv_reads_every_day_of_the_range_and_only_those(app, redis):
    client = admin_client(app)
    redis.hset(tally.day_key(date(2026, 2, 28)), "contacts:sms", 40)  # before the range
    redis.hset(tally.day_key(date(2026, 3, 1)), "contacts:sms", 12)
    redis.hset(tally.day_key(date(2026, 3, 3)), "contacts:sms", 3)

    def hgetalls(path: str) -> int:
        redis.config_resetstat()
        assert client.get(path).status_code == 200
        return int(redis.info("commandstats")["cmdstat_hgetall"]["calls"])

    one = hgetalls("/console/admin/reports.csv?from=2026-03-01&to=2026-03-01")
    assert hgetalls("/console/admin/reports.csv?from=2026-03-01&to=2026-03-31") == one + 30
    sheet = client.get("/console/admin/reports.csv?from=2026-03-01&to=2026-03-31")
    assert sheet.get_data(as_text=True).splitlines()[1:] == [
        "2026-03-01,contacts:sms,12",
        "2026-03-03,contacts:sms,<5",
    ]


@pytest.mark.parametrize("path", ["/console/admin/reports", "/console/admin/reports.csv"])
def test_a_counsellor_cannot_see_the_reports(app, path):
    add_counsellor(app, "alex")
    client = app.test_client()
    login(client, "alex")
    assert client.get(path).status_code == 403
    assert b"Reports" not in client.get("/console/").data


def test_the_report_keys_name_nobody(app, client, redis):
    text(client, "SAFE", sender=callback_number(1))
    keys = [k.decode() for k in redis.keys(f"{KEY_PREFIX}:reports:*")]
    assert keys == [tally.day_key(today())]
    assert all(callback_number(1)[-4:] not in field for field in counted(redis))


def test_fail_safe_answers_and_opt_outs_are_counted(client, redis):
    answer = twilio_post(client, "/twilio/voice/fallback", call_params())
    assert answer.status_code == 200 and b"9 9 9" in answer.data
    assert counted(redis) == {}  # the fail-safe needs no Redis: its count waits
    text(client, "STOP", sender=callback_number(1))  # the opt-out's write carries it
    assert counted(redis) == {"failsafe:error": 1, "optout:sms": 1}
