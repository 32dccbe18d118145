"""Check-in calls end to end: signed texts in, a real worker process placing the calls
through the real twilio client at the stand-in, and Twilio's answers posted back.

A check-in "minute" is MINUTE seconds here (HELPLINE_CHECKIN_MINUTE_SECONDS), so a call
asked for in 1 minute comes after MINUTE seconds, a retry MINUTE after a missed call.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_py
from flask import Flask
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.config import Settings
from helpline.checkins.sessions import CheckinSessions, Status
from helpline.conversation.regions import load_region
from helpline.infrastructure import embedded
from helpline.infrastructure.errors import NotKept
from helpline.web.checkin import make_token
from helpline.web.services import helpline
from tests.console_helpers import (
    ADMIN_PHONE,
    COUNSELLOR_PHONE,
    add_counsellor,
    https_client,
    login,
    post,
)
from tests.factories import (
    ACCOUNT_SID,
    HELPLINE_NUMBER,
    PROCESS_WAIT_SECONDS,
    Call,
    FakeClock,
    callback_number,
    child_pids,
    make_settings,
    scan_for_numbers,
    sms_params,
    text,
    twilio_post,
    wait_until,
    worker_environment,
)
from tests.test_crisis_corpus import corpus
from tests.twilio_api import (
    Received,
    TwilioApi,
    answer_call,
    gather_input,
    post_call_status,
)

ROOT = Path(__file__).resolve().parent.parent
MINUTE = 2.0
PUBLIC = "http://localhost"
TEXTER = callback_number(7)
OTHER = callback_number(8)
FRIEND = callback_number(9)


@dataclass
class Line:
    """The helpline as a texter meets it, with a worker process behind it."""

    app: Flask
    client: FlaskClient
    twilio: TwilioApi
    redis: redis_py.Redis
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]]

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_process"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def kill_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                for child in child_pids(proc.pid):
                    os.kill(child, signal.SIGKILL)
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=PROCESS_WAIT_SECONDS)

    @property
    def sessions(self) -> CheckinSessions:
        return self.app.extensions["helpline"].checkin_sessions

    def calls_to(self, number: str) -> list[Received]:
        return [c for c in self.twilio.calls() if c.form["To"] == number]

    def texts_to(self, number: str) -> list[str]:
        return [m.form["Body"] for m in self.twilio.messages() if m.form["To"] == number]

    def wait_for_call(self, number: str, count: int = 1) -> Received:
        wait_until(lambda: len(self.calls_to(number)) >= count, what=f"call {count}")
        return self.calls_to(number)[count - 1]

    def wait_for_text(self, number: str, words: str) -> str:
        wait_until(
            lambda: any(words in body for body in self.texts_to(number)),
            what=f"a text saying {words!r}",
        )
        return next(body for body in self.texts_to(number) if words in body)

    def nothing_more_for(self, number: str, calls: int) -> None:
        """Show `number` gets no more calls: another texter's later check-in comes first."""
        book(self.client, OTHER, minutes="3")
        self.wait_for_call(OTHER)
        assert len(self.calls_to(number)) == calls


def book(
    client: FlaskClient,
    sender: str = TEXTER,
    *,
    minutes: str = "1",
    place: str = "12 Elm Street, flat 3",
    contact: str = "2",
    keyword: str = "CHECKIN",
) -> str:
    """Ask for a check-in by text, answering each question; return the last reply."""
    for body in (keyword, "1", minutes, place, contact):
        reply = text(client, body, sender=sender)
    return reply


@pytest.fixture
def line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_server: str,
    redis: redis_py.Redis,
    twilio_api: TwilioApi,
) -> Iterator[Line]:
    extra = {"PUBLIC_URL": PUBLIC, "HELPLINE_CHECKIN_MINUTE_SECONDS": str(MINUTE)}
    with worker_environment(
        monkeypatch,
        data_dir=tmp_path / "var",
        redis_url=redis_server,
        twilio_api_url=twilio_api.url,
        **extra,
    ) as env:
        settings: Settings = make_settings(
            tmp_path / "var",
            redis_server,
            twilio_api_url=twilio_api.url,
            public_url=PUBLIC,
            checkin_minute_seconds=MINUTE,
        )
        app = create_app(settings)
        add_counsellor(app, "alex")
        add_counsellor(app, "ada", admin=True)
        app.extensions["console"].counsellors.set_on_duty("alex", True)
        found = Line(app, app.test_client(), twilio_api, redis, env, [])
        found.start_worker()
        try:
            yield found
        finally:
            found.kill_workers()


def gather(xml: str) -> ET.Element:
    found = ET.fromstring(xml).find("Gather")
    assert found is not None, xml
    return found


def said(xml: str) -> str:
    return " ".join(say.text or "" for say in ET.fromstring(xml).iter("Say"))


# -- booking --------------------------------------------------------------------------------


def test_checkin_by_text_says_what_it_is_and_asks_consent_first(line: Line) -> None:
    reply = text(line.client, "check on me", sender=TEXTER)
    assert "not an emergency service" in reply
    assert "a counsellor is alerted and may call 999" in reply
    assert "Reply 1 Yes, 2 No" in reply
    assert "OK, no check-in" in text(line.client, "no", sender=TEXTER)
    assert line.sessions.open_for(TEXTER) is None


def test_booking_asks_minutes_place_and_contact_then_confirms_the_time(line: Line) -> None:
    text(line.client, "CHECKIN", sender=TEXTER)
    assert "from 1 to 30" in text(line.client, "yes", sender=TEXTER)
    assert "from 1 to 30" in text(line.client, "45", sender=TEXTER)  # out of range: again
    assert "Where will you be?" in text(line.client, "10 min", sender=TEXTER)
    assert "Send their number" in text(line.client, "the blue van behind the Co-op", sender=TEXTER)
    reply = text(line.client, FRIEND, sender=TEXTER)
    assert "We'll call you at about " in reply
    assert "Text OK to cancel" in reply
    assert "naloxone within reach, door unlocked" in reply
    session = line.sessions.open_for(TEXTER)
    assert session is not None and session.minutes == 10
    assert line.sessions.place(session.id) == "the blue van behind the Co-op"
    assert line.sessions.contact(session.id) == FRIEND
    # Sealed at rest: neither number, nor the place, is anywhere in Redis in the clear.
    assert scan_for_numbers(line.redis, [TEXTER, FRIEND]) == []
    assert not any(b"blue van" in key for key in line.redis.scan_iter())


def test_a_closed_check_in_is_deleted_after_the_retention_time(staffed: Flask) -> None:
    sessions = staffed.extensions["helpline"].checkin_sessions
    clock = FakeClock(1_800_000_000.0)
    sessions.clock = clock
    _, sid = sessions.book(TEXTER, minutes=5, due=clock() + 300, lang="en", channel="sms")
    sessions.close(sid, "ok_text")
    clock.advance(23 * 3600)
    assert sessions.purge(24 * 3600) == 0
    clock.advance(2 * 3600)
    assert sessions.purge(24 * 3600) == 1
    assert sessions.get(sid) is None
    assert sessions.timeline(sid) == []


def test_asking_again_moves_the_one_open_check_in(line: Line) -> None:
    book(line.client, minutes="20")
    first = line.sessions.open_for(TEXTER)
    assert "We've moved your check-in" in book(line.client, minutes="25")
    second = line.sessions.open_for(TEXTER)
    assert first is not None and second is not None
    assert (second.id, second.minutes) == (first.id, 25)


# -- the call -------------------------------------------------------------------------------


def test_an_ignored_check_in_alerts_the_counsellor_on_duty_with_the_place(line: Line) -> None:
    book(line.client, place="12 Elm Street, flat 3")
    for attempt in (1, 2, 3):
        call = line.wait_for_call(TEXTER, attempt)
        assert call.form["From"] == HELPLINE_NUMBER
        assert call.form["MachineDetection"] == "Enable"
        assert post_call_status(line.client, call, "no-answer") == 204
        if attempt == 1:
            assert "Reply OK if you're OK" in line.wait_for_text(TEXTER, "Reply OK")
    alert = line.wait_for_text(COUNSELLOR_PHONE, "check-in call was not answered")
    assert "12 Elm Street, flat 3" in alert
    session = line.sessions.open_for(TEXTER)
    assert session is not None
    assert f"{PUBLIC}/console/checkins/{session.id}" in alert
    assert session.status is Status.ESCALATED
    assert len(line.calls_to(TEXTER)) == 3  # the first call and two retries, no more
    assert len(line.texts_to(TEXTER)) == 1  # one "reply OK" for the round


def test_pressing_1_on_the_call_ends_the_check_in_kindly(line: Line) -> None:
    book(line.client)
    call = line.wait_for_call(TEXTER)
    asked = answer_call(line.client, call)
    assert "If you're OK, press 1" in said(asked)
    answer = gather_input(line.client, call, gather(asked).attrib["action"], Digits="1")
    assert "glad you're OK" in said(answer)
    assert ET.fromstring(answer).find("Hangup") is not None
    post_call_status(line.client, call, "completed")
    assert line.sessions.open_for(TEXTER) is None
    line.nothing_more_for(TEXTER, calls=1)
    assert line.texts_to(COUNSELLOR_PHONE) == []


def test_danger_said_on_the_call_is_not_an_ok_it_gets_the_emergency_answer_and_alerts_now(
    line: Line,
) -> None:
    book(line.client, place="12 Elm Street, flat 3")
    call = line.wait_for_call(TEXTER)
    action = gather(answer_call(line.client, call)).attrib["action"]
    answer = gather_input(line.client, call, action, SpeechResult="I'm OK but he's not breathing")

    assert "call 9 9 9" in said(answer)
    assert "glad you're OK" not in said(answer)
    assert ET.fromstring(answer).find("Hangup") is not None
    alert = line.wait_for_text(COUNSELLOR_PHONE, "someone said a person may be in danger")
    assert "12 Elm Street, flat 3" in alert
    session = line.sessions.open_for(TEXTER)
    assert session is not None and session.status is Status.ESCALATED
    assert len(line.calls_to(TEXTER)) == 1  # alerted at once, not after two more calls


def test_saying_im_ok_counts_as_pressing_1(line: Line) -> None:
    book(line.client)
    call = line.wait_for_call(TEXTER)
    action = gather(answer_call(line.client, call)).attrib["action"]
    answer = gather_input(line.client, call, action, SpeechResult="I'm OK thanks")
    assert "glad you're OK" in said(answer)
    assert line.sessions.open_for(TEXTER) is None


def test_pressing_2_calls_again_five_minutes_later(line: Line) -> None:
    book(line.client)
    call = line.wait_for_call(TEXTER)
    action = gather(answer_call(line.client, call)).attrib["action"]
    answer = gather_input(line.client, call, action, Digits="2")
    assert "call you again in 5 minutes" in said(answer)
    post_call_status(line.client, call, "completed")
    again = line.wait_for_call(TEXTER, 2)
    assert again.at - call.at >= 5 * MINUTE - 0.5
    assert line.texts_to(TEXTER) == []  # putting it off is an answer: no "reply OK"


def test_no_key_on_the_call_is_a_missed_call_and_a_machine_too(line: Line) -> None:
    book(line.client)
    call = line.wait_for_call(TEXTER)
    action = gather(answer_call(line.client, call)).attrib["action"]
    assert "We didn't hear you" in said(gather_input(line.client, call, action))
    second = line.wait_for_call(TEXTER, 2)
    assert (
        ET.fromstring(answer_call(line.client, second, "machine_end_beep")).find("Hangup")
        is not None
    )
    line.wait_for_call(TEXTER, 3)


def test_an_ok_text_cancels_the_check_in_before_the_call(line: Line) -> None:
    book(line.client, minutes="2")
    assert "Glad you're OK" in text(line.client, "ok", sender=TEXTER)
    assert line.sessions.open_for(TEXTER) is None
    line.nothing_more_for(TEXTER, calls=0)


def test_the_trusted_contact_is_texted_at_escalation_with_the_place(line: Line) -> None:
    book(line.client, place="Room 4, Star Hostel", contact=FRIEND)
    for attempt in (1, 2, 3):
        post_call_status(line.client, line.wait_for_call(TEXTER, attempt), "busy")
    body = line.wait_for_text(FRIEND, "missed a check-in")
    assert "Room 4, Star Hostel" in body
    assert "call 999" in body
    assert TEXTER not in body


def test_nobody_acknowledging_alerts_again_on_duty_and_admins(line: Line) -> None:
    book(line.client)
    for attempt in (1, 2, 3):
        post_call_status(line.client, line.wait_for_call(TEXTER, attempt), "failed")
    line.wait_for_text(COUNSELLOR_PHONE, "check-in call was not answered")
    assert "still not taken" in line.wait_for_text(ADMIN_PHONE, "still not taken")
    assert "still not taken" in line.wait_for_text(COUNSELLOR_PHONE, "still not taken")


def test_a_killed_worker_does_not_lose_or_repeat_the_call(line: Line) -> None:
    line.kill_workers()
    book(line.client)
    line.start_worker()
    call = line.wait_for_call(TEXTER)
    line.kill_workers()  # and straight back: the attempt's record stops a second call
    line.start_worker()
    action = gather(answer_call(line.client, call)).attrib["action"]
    gather_input(line.client, call, action, Digits="1")
    line.nothing_more_for(TEXTER, calls=1)


# -- languages and refusals -----------------------------------------------------------------


def test_a_spanish_check_in_calls_in_spanish_and_hears_estoy_bien(line: Line) -> None:
    assert "Responde 1" in text(line.client, "ESPAÑOL", sender=TEXTER)
    reply = book(line.client, keyword="VIGILAME", place="Calle Mayor 5")
    assert "Te llamaremos hacia las" in reply
    call = line.wait_for_call(TEXTER)
    asked = answer_call(line.client, call)
    assert "Si estás bien, pulsa 1" in said(asked)
    assert gather(asked).attrib["language"] == "es-ES"
    answer = gather_input(
        line.client, call, gather(asked).attrib["action"], SpeechResult="estoy bien"
    )
    assert "Qué bien que estés bien" in said(answer)


def test_with_nobody_on_duty_a_check_in_is_refused_with_the_safety_basics(line: Line) -> None:
    line.app.extensions["console"].counsellors.set_on_duty("alex", False)
    reply = text(line.client, "CHECKIN", sender=TEXTER)
    assert "check-in calls aren't available right now" in reply
    assert "don't use alone" in reply
    assert "Call 999" in reply


def test_out_of_hours_a_check_in_is_refused(
    tmp_path: Path, redis_server: str, redis: redis_py.Redis
) -> None:
    app = create_app(make_settings(tmp_path / "var", redis_server, hours="Mon 03:00-03:01"))
    add_counsellor(app, "alex")
    app.extensions["console"].counsellors.set_on_duty("alex", True)
    reply = text(app.test_client(), "CHECKIN", sender=TEXTER)
    assert "check-in calls aren't available right now" in reply


def test_in_the_us_the_refusal_gives_never_use_alone(
    tmp_path: Path, redis_server: str, redis: redis_py.Redis
) -> None:

    settings = make_settings(tmp_path / "var", redis_server)
    app = create_app(
        make_settings(tmp_path / "var", redis_server, region=load_region(settings.flows_dir, "US"))
    )
    reply = text(app.test_client(), "CHECKIN", sender=TEXTER)
    assert "800-484-3731" in reply
    assert "Call 911" in reply


# -- the console ----------------------------------------------------------------------------


def escalate(line: Line, place: str = "12 Elm Street, flat 3") -> str:
    """Book a check-in and miss every call of it; return the session id once escalated."""
    book(line.client, place=place)
    for attempt in (1, 2, 3):
        post_call_status(line.client, line.wait_for_call(TEXTER, attempt), "no-answer")
    line.wait_for_text(COUNSELLOR_PHONE, "check-in call was not answered")
    session = line.sessions.open_for(TEXTER)
    assert session is not None and session.status is Status.ESCALATED
    return session.id


def test_the_console_puts_the_escalation_first_and_audits_the_reveal(line: Line) -> None:
    sid = escalate(line)
    console = https_client(line.app)
    login(console)
    queue = console.get("/console/").get_data(as_text=True)
    assert queue.index("Missed check-ins") < queue.index("Waiting, in the order")
    assert f'data-checkin="{sid}"' in queue
    assert TEXTER not in queue  # masked until opened
    page = console.get(f"/console/checkins/{sid}").get_data(as_text=True)
    assert TEXTER in page
    assert "12 Elm Street, flat 3" in page
    assert page.count("Call missed") == 3
    assert "Escalated to counsellors" in page
    entries = line.app.extensions["helpline"].audit.recent(action="reveal")
    assert [(e.actor, e.request) for e in entries] == [("alex", sid)]


def test_acknowledging_stops_the_re_alerts(line: Line) -> None:
    sid = escalate(line)
    console = https_client(line.app)
    login(console)
    post(console, f"/console/checkins/{sid}/acknowledge")
    page = console.get(f"/console/checkins/{sid}").get_data(as_text=True)
    assert "Acknowledged by alex" in page
    line.nothing_more_for(TEXTER, calls=3)  # past the time a re-alert would have gone
    assert not any("still not taken" in body for body in line.texts_to(ADMIN_PHONE))


def test_call_now_bridges_the_counsellor_to_the_caller_and_the_outcome_closes_it(
    line: Line,
) -> None:
    sid = escalate(line)
    console = https_client(line.app)
    login(console)
    post(console, f"/console/checkins/{sid}/call")
    ring = line.wait_for_call(COUNSELLOR_PHONE)
    gather = ET.fromstring(answer_call(line.client, ring)).find("Gather")
    assert gather is not None  # the counsellor presses 1 before the caller is dialled
    accepted = gather_input(line.client, ring, gather.attrib["action"], Digits="1")
    dial = ET.fromstring(accepted).find("Dial")
    assert dial is not None and dial.attrib["callerId"] == HELPLINE_NUMBER
    assert [n.text for n in dial.iter("Number")] == [TEXTER]
    post(console, f"/console/checkins/{sid}/outcome", {"outcome": "reached_safe"})
    assert line.sessions.open_for(TEXTER) is None
    assert f'data-checkin="{sid}"' not in console.get("/console/").get_data(as_text=True)


# -- by phone -------------------------------------------------------------------------------


@pytest.fixture
def staffed(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> Flask:
    """The app with a counsellor on duty (no worker: these tests stop at the booking)."""
    app = create_app(make_settings(tmp_path / "var", redis_server))
    add_counsellor(app, "alex")
    app.extensions["console"].counsellors.set_on_duty("alex", True)
    return app


def test_a_retried_ok_text_gets_the_same_reply_not_the_menu(staffed: Flask) -> None:
    client = staffed.test_client()
    book(client, minutes="2")
    ok = sms_params("ok", sender=TEXTER)
    first = twilio_post(client, "/twilio/sms", ok).get_data(as_text=True)
    retried = twilio_post(client, "/twilio/sms", ok).get_data(as_text=True)  # same MessageSid

    assert "Glad you're OK" in first
    assert retried == first
    sessions = staffed.extensions["helpline"].checkin_sessions
    assert sessions.open_for(TEXTER) is None
    # The conversation carries on as before: the next text is read afresh.
    assert "Glad you're OK" not in text(client, "MENU", sender=TEXTER)


def test_ok_with_danger_in_it_gets_the_emergency_reply_and_keeps_the_check_in(
    staffed: Flask,
) -> None:
    """Every danger message of the corpora, after "ok": the emergency reply, and the
    check-in stays open (its call, and its escalation, still come)."""
    client = staffed.test_client()
    book(client, minutes="2")
    services = staffed.extensions["helpline"]
    read = 0
    for message in corpus("crisis_en") + corpus("self_harm_en"):
        body = f"ok {message}"
        reply = text(client, body, sender=TEXTER)
        if "Glad you're OK" in reply:
            raise AssertionError(f"{body!r} closed the check-in: {reply!r}")
        if "999" in reply:
            read += 1
        assert services.checkin_sessions.open_for(TEXTER) is not None, body
    assert read >= 0.98 * len(corpus("crisis_en") + corpus("self_harm_en"))


def test_a_caller_books_a_check_in_by_keys_and_speech_with_the_place_read_back(
    staffed: Flask,
) -> None:
    call = Call(staffed.test_client(), sender=TEXTER)
    assert "For a check-in call while you use, press 5" in call.step.text
    assert "We are not an emergency service" in call.say("please check on me").text
    assert "Key in a number from 1 to 30" in call.press("1").text
    assert "Where will you be?" in call.press("20").text
    assert (
        "I heard: the blue van behind the Co-op." in call.say("the blue van behind the Co-op").text
    )
    assert "Key in their number" in call.press("1").text
    booked = call.press("2")
    assert "We'll call you at about" in booked.text
    assert "naloxone within reach" in booked.text
    sessions = staffed.extensions["helpline"].checkin_sessions
    session = sessions.open_for(TEXTER)
    assert session is not None and (session.minutes, session.channel) == (20, "voice")
    assert sessions.place(session.id) == "the blue van behind the Co-op"


def test_a_caller_can_text_the_place_after_the_call_instead(staffed: Flask) -> None:
    client = staffed.test_client()
    call = Call(client, sender=TEXTER)
    call.press("5", "1", "10")
    assert "text the word WHERE to this number" in call.press("3").text
    assert "We'll call you at about" in call.press("2").text
    assert "Where will you be for your check-in?" in text(client, "WHERE", sender=TEXTER)
    assert "we have the place" in text(client, "Flat 2, 9 Mill Lane", sender=TEXTER)
    sessions = staffed.extensions["helpline"].checkin_sessions
    session = sessions.open_for(TEXTER)
    assert session is not None and sessions.place(session.id) == "Flat 2, 9 Mill Lane"


def test_a_place_sent_without_a_check_in_booked_says_so(staffed: Flask) -> None:
    client = staffed.test_client()
    text(client, "WHERE", sender=TEXTER)
    assert "You have no check-in booked" in text(client, "12 Elm Street", sender=TEXTER)


def test_a_hidden_number_is_told_a_check_in_needs_one(staffed: Flask) -> None:
    call = Call(staffed.test_client(), sender="anonymous")
    reply = call.press("5").text
    assert "yours is hidden" in reply
    assert "call 9 9 9" in reply


def test_a_check_in_pending_survives_a_redis_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, twilio_api: TwilioApi
) -> None:
    redis_dir = tmp_path / "r"
    url, _ = embedded.ensure_running(redis_dir)
    extra = {"PUBLIC_URL": PUBLIC, "HELPLINE_CHECKIN_MINUTE_SECONDS": str(MINUTE)}
    try:
        with worker_environment(
            monkeypatch,
            data_dir=tmp_path / "var",
            redis_url=url,
            twilio_api_url=twilio_api.url,
            **extra,
        ) as env:
            settings = make_settings(
                tmp_path / "var",
                url,
                twilio_api_url=twilio_api.url,
                public_url=PUBLIC,
                checkin_minute_seconds=MINUTE,
            )
            app = create_app(settings)
            add_counsellor(app, "alex")
            app.extensions["console"].counsellors.set_on_duty("alex", True)
            line = Line(app, app.test_client(), twilio_api, app.extensions["redis"], env, [])
            line.start_worker()
            try:
                book(line.client, minutes="3")
                embedded.stop(redis_dir)  # everything it held comes back from its AOF
                embedded.ensure_running(redis_dir)
                call = line.wait_for_call(TEXTER)
                action = gather(answer_call(line.client, call)).attrib["action"]
                assert "glad you're OK" in said(gather_input(line.client, call, action, Digits="1"))
                assert len(line.calls_to(TEXTER)) == 1
            finally:
                line.kill_workers()
    finally:
        embedded.stop(redis_dir)


def test_a_check_in_is_put_off_three_times_at_most(staffed: Flask) -> None:
    sessions = staffed.extensions["helpline"].checkin_sessions
    clock = FakeClock(1_800_000_000.0)
    sessions.clock = clock
    _, sid = sessions.book(TEXTER, minutes=1, due=clock() + 60, lang="en", channel="sms")
    results = []
    for _ in range(4):
        clock.advance(300)
        (claimed,) = sessions.claim_due(max_tries=3, realert_seconds=120)
        results.append(sessions.extend(sid, claimed.attempt, seconds=300, most=3))
    assert results == ["extended", "extended", "extended", "spent"]


def test_once_put_off_three_times_the_call_no_longer_offers_more_time(staffed: Flask) -> None:
    services = staffed.extensions["helpline"]
    sessions = services.checkin_sessions
    clock = FakeClock(1_800_000_000.0)
    sessions.clock = clock
    _, sid = sessions.book(TEXTER, minutes=1, due=clock() + 60, lang="en", channel="sms")

    def call_answered() -> str:
        clock.advance(300)
        (claimed,) = sessions.claim_due(max_tries=3, realert_seconds=120)
        token = make_token(services.sealer, sid, claimed.attempt)
        params = {"CallSid": "CA" + "c" * 32, "AccountSid": ACCOUNT_SID, "To": TEXTER}
        response = twilio_post(
            staffed.test_client(),
            f"/twilio/checkin/{token}/answer",
            params | {"AnsweredBy": "human"},
        )
        assert response.status_code == 200
        return response.get_data(as_text=True)

    for _ in range(3):
        asked = call_answered()
        assert "For 5 more minutes, press 2" in said(asked)
        assert services.checkins.reply(sid, sessions.get(sid).attempt, "2", "") == "more"
    last = call_answered()
    assert "press 2" not in said(last)
    assert "If you're OK, press 1" in said(last)
    assert "can't put this check-in off any more" in said(last)
    assert "more time" not in gather(last).attrib["hints"]


def test_a_blocked_caller_cannot_book_a_check_in_but_hears_the_safety_basics(
    staffed: Flask,
) -> None:
    with staffed.app_context():
        helpline().blocks.add(TEXTER, reason="Abusive calls", days=30, by="sam")
    reply = book(staffed.test_client())
    assert "check-in calls aren't available right now" in reply
    assert "don't use alone" in reply and "Call 999" in reply
    with staffed.app_context():
        assert helpline().checkin_sessions.open_for(TEXTER) is None


def test_check_ins_started_and_ok_are_counted_in_the_metrics(
    tmp_path: Path, redis_server: str, redis: redis_py.Redis
) -> None:
    token = "metrics-" + "c4" * 16
    app = create_app(make_settings(tmp_path / "var", redis_server, metrics_token=token))
    add_counsellor(app, "alex")
    app.extensions["console"].counsellors.set_on_duty("alex", True)
    client = app.test_client()

    def count(event: str) -> float:
        page = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        prefix = f'helpline_checkins_total{{event="{event}"}} '
        lines = [x for x in page.get_data(as_text=True).splitlines() if x.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    started, ok = count("started"), count("ok")
    book(client)
    text(client, "OK", sender=TEXTER)
    assert (count("started"), count("ok")) == (started + 1, ok + 1)


def test_a_check_in_text_is_not_marked_as_going_until_a_replica_holds_the_marker(
    staffed: Flask, redis: redis_py.Redis
) -> None:
    """With replicas required (Sentinel), a text about a session is sent only once the
    record that it is going survives a failover; this Redis has no replica to take it."""
    services = staffed.extensions["helpline"]
    kept = CheckinSessions(redis, services.sealer, services.phone_key, min_replicas=1)
    _, sid = kept.book(TEXTER, minutes=5, due=time.time() + 300, lang="en", channel="sms")
    with pytest.raises(NotKept):
        kept.sending(sid, "remind:0", "Reply OK if you're OK", time.time())
    assert kept.send_record(sid, "remind:0").started is not None  # written, not promised
