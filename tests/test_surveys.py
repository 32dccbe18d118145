"""The follow-up survey end to end: a counsellor records "reached" in the console, a real
RQ worker texts the survey once it falls due (time moved by the survey desk's clock, not
waited for), and the answer comes back through the signed SMS webhook."""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import Retry

from helpline import create_app
from helpline.application.config import Settings
from helpline.application.jobs import Jobs
from helpline.application.messaging import optout_key
from helpline.callbacks.queue import REQ, Contact, Request
from helpline.callbacks.surveys import DUE, OPEN, WORDS_FIELD
from helpline.conversation.channels import SMS, WHATSAPP, Channel
from helpline.infrastructure.privacy import phone_digest
from helpline.reports import tally
from helpline.web.services import helpline
from tests.console_helpers import add_counsellor, login, post
from tests.factories import (
    FakeClock,
    callback_number,
    make_settings,
    scan_for,
    scan_for_numbers,
    sms_params,
    sms_replies,
    text,
    twilio_post,
    wait_until,
    work,
)
from tests.twilio_api import TwilioApi
from workers import jobs
from workers.main import queue as job_queue

MINUTE = 60
DELAY = 60 * MINUTE  # the default HELPLINE_SURVEY_DELAY_MINUTES


@pytest.fixture
def ctx(worker_env: dict[str, str]) -> jobs.Context:
    return jobs.context()


@pytest.fixture
def console(app: Flask) -> FlaskClient:
    return logged_in(app)


def logged_in(app: Flask) -> FlaskClient:
    """A counsellor logged in to the console (a client of its own: texts use `client`)."""
    add_counsellor(app, "alex")
    browser = app.test_client()
    assert login(browser).status_code == 302
    return browser


def called(
    app: Flask,
    console: FlaskClient,
    n: int,
    *,
    outcome: str = "reached",
    texts: bool = True,
    texts_by: Channel = SMS,
    lang: str = "en",
) -> Request:
    """Queue callback_number(n)'s request; the counsellor takes it and records the outcome."""
    request = ask(app, n, texts=texts, texts_by=texts_by, lang=lang)
    post(console, "/console/take")
    page = console.get(f"/console/requests/{request.id}")
    assert page.status_code == 200  # taken by this counsellor
    answer = post(console, f"/console/requests/{request.id}/outcome", {"outcome": outcome})
    assert answer.status_code == 302
    return request


def ask(
    app: Flask, n: int, *, texts: bool = True, texts_by: Channel = SMS, lang: str = "en"
) -> Request:
    """Queue a call back to callback_number(n), as the intake does."""
    with app.app_context():
        placed = helpline().queue.enqueue(
            Contact(callback_number(n), voicemail_ok=False, texts_ok=texts, texts_by=texts_by.name),
            channel="voice" if texts_by is SMS else texts_by.name,
            lang=lang,
            urgent=False,
        )
    return placed.request


def later(ctx: jobs.Context, seconds: float) -> None:
    """Run the workers' housekeeping (and every job it queues) as if `seconds` had passed."""
    ctx.surveys.clock = FakeClock(time.time() + seconds)
    job_queue(ctx.client).enqueue(jobs.housekeeping)
    work(ctx)


def texts_to(api: TwilioApi, n: int, channel: Channel = SMS) -> list[str]:
    address = channel.address(callback_number(n))
    return [m.form.get("Body", "") for m in api.messages() if m.form["To"] == address]


def survey(ctx: jobs.Context, lang: str = "en", channel: Channel = SMS) -> str:
    return ctx.text("sms.survey", lang, channel)


def thanks(ctx: jobs.Context, lang: str = "en") -> str:
    return ctx.text("sms.survey_thanks", lang)


def today(redis, settings: Settings) -> dict[str, int]:
    """Today's report counters, as the reports page reads them."""
    raw = redis.hgetall(tally.day_key(tally.local_day(ZoneInfo(settings.zone))))
    return {key.decode(): int(value) for key, value in raw.items()}


# -- sending ---------------------------------------------------------------------------------


def test_a_reached_caller_gets_one_survey_text_when_it_falls_due_and_not_before(
    app, console, ctx, twilio_api, redis, settings
):
    called(app, console, 1)
    later(ctx, DELAY - MINUTE)
    assert twilio_api.messages() == []  # not yet due

    later(ctx, DELAY + MINUTE)
    assert texts_to(twilio_api, 1) == [survey(ctx)]
    assert len(twilio_api.messages()) == 1
    assert today(redis, settings)["survey:sent"] == 1

    later(ctx, DELAY + 5 * MINUTE)  # another housekeeping pass finds nothing due
    assert len(twilio_api.messages()) == 1


def test_a_retried_job_or_a_second_reached_sends_no_second_survey(
    app, console, ctx, twilio_api, redis, settings
):
    request = called(app, console, 1)
    later(ctx, DELAY + MINUTE)
    assert texts_to(twilio_api, 1) == [survey(ctx)]

    job_queue(ctx.client).enqueue(jobs.survey_text, request.id)  # the job run again
    work(ctx)
    # The outcome recorded again: the survey falls due again, and still goes once.
    ctx.surveys.clock = FakeClock(time.time())
    assert ctx.surveys.reached(ctx.queue.get(request.id))
    later(ctx, DELAY + MINUTE)

    assert texts_to(twilio_api, 1) == [survey(ctx)]
    assert today(redis, settings)["survey:sent"] == 1


def test_the_survey_is_in_the_callers_language_and_goes_by_whatsapp_inside_the_window(
    app, client, console, ctx, twilio_api
):
    text(client, "hola", sender=WHATSAPP.address(callback_number(2)))  # opens the window
    called(app, console, 2, texts_by=WHATSAPP, lang="es")
    later(ctx, DELAY + MINUTE)
    assert texts_to(twilio_api, 2, WHATSAPP) == [survey(ctx, "es", WHATSAPP)]
    assert survey(ctx, "es") != survey(ctx, "en")


def test_no_survey_outside_the_whatsapp_window_without_a_template(
    app, client, console, ctx, twilio_api, redis
):
    request = called(app, console, 2, texts_by=WHATSAPP)
    later(ctx, DELAY + MINUTE)
    assert twilio_api.messages() == []
    assert ctx.queue.send_results(request.id) == {"survey": jobs.OUTSIDE_WINDOW}
    # Nothing went, so nothing waits for an answer: "1" is the menu's.
    assert redis.keys(OPEN + "*") == []


def test_a_survey_text_twilio_failed_waits_for_no_answer_until_its_retry_goes(
    app, client, console, ctx, twilio_api, monkeypatch, redis, settings
):
    monkeypatch.setattr(ctx, "jobs", Jobs(ctx.client, retry=Retry(max=1, interval=[1])))
    twilio_api.fail_next(1, status=503)
    called(app, console, 1)
    later(ctx, DELAY + MINUTE)
    assert twilio_api.messages() == []
    assert text(client, "1", sender=callback_number(1)) != thanks(ctx)  # no survey had

    wait_until(lambda: (work(ctx), len(twilio_api.messages()))[1] == 1, what="the retry")
    assert texts_to(twilio_api, 1) == [survey(ctx)]
    assert text(client, "2", sender=callback_number(1)) == thanks(ctx)
    assert today(redis, settings)["survey:2"] == 1
    assert "survey:1" not in today(redis, settings)


@pytest.mark.parametrize("outcome", ["no_answer", "wrong_number", "cancelled"])
def test_no_survey_unless_the_caller_was_reached(app, console, ctx, twilio_api, outcome):
    request = called(app, console, 1, outcome=outcome)
    later(ctx, DELAY + MINUTE)
    assert survey(ctx) not in texts_to(twilio_api, 1)  # (no answer: the missed-call text)
    assert "survey" not in ctx.queue.send_results(request.id)


def test_no_survey_to_a_caller_who_said_no_texts(app, console, ctx, twilio_api):
    called(app, console, 1, texts=False)
    later(ctx, DELAY + MINUTE)
    assert twilio_api.messages() == []


def test_no_survey_to_a_caller_who_opted_out_before_the_call(app, console, ctx, twilio_api):
    ctx.client.sadd(optout_key(SMS), phone_digest(ctx.phone_key, callback_number(1)))
    called(app, console, 1)
    later(ctx, DELAY + MINUTE)
    assert twilio_api.messages() == []


def test_no_survey_to_a_caller_who_texted_stop_after_the_call(
    app, client, console, ctx, twilio_api, redis, settings
):
    called(app, console, 1)
    assert text(client, "STOP", sender=callback_number(1)) == ""
    later(ctx, DELAY + MINUTE)
    assert twilio_api.messages() == []
    assert "survey:sent" not in today(redis, settings)


def test_a_delay_of_0_sends_no_surveys(tmp_path, redis_server, redis, ctx, twilio_api):
    app = create_app(make_settings(tmp_path / "var", redis_server, survey_delay_minutes=0))
    called(app, logged_in(app), 1)
    later(ctx, 7 * 24 * 60 * MINUTE)
    assert twilio_api.messages() == []
    assert redis.zcard(DUE) == 0


# -- the answer ------------------------------------------------------------------------------


def surveyed(app: Flask, console: FlaskClient, ctx: jobs.Context, n: int, **how: str) -> Request:
    """callback_number(n) was reached and has had the survey text."""
    request = called(app, console, n, **how)
    later(ctx, DELAY + MINUTE)
    assert len(ctx.queue.send_results(request.id)["survey"]) == 34  # a message SID
    return request


def test_an_answer_is_thanked_and_counted_and_its_words_are_kept_nowhere(
    app, client, console, ctx, redis, settings
):
    surveyed(app, console, ctx, 1)

    assert text(client, "4 it helped", sender=callback_number(1)) == thanks(ctx)

    assert today(redis, settings)["survey:4"] == 1
    assert scan_for(redis, [b"it helped", b"IT HELPED"]) == []
    assert scan_for_numbers(redis, [callback_number(1)]) == []


def test_a_retried_answer_is_thanked_again_and_counted_once(
    app, client, console, ctx, redis, settings
):
    surveyed(app, console, ctx, 1)
    answer = sms_params("4 it helped", sender=callback_number(1))

    for _ in range(2):  # Twilio sends the same message again (same MessageSid)
        response = twilio_post(client, "/twilio/sms", answer)
        assert sms_replies(response.get_data(as_text=True)) == [thanks(ctx)]
    assert today(redis, settings)["survey:4"] == 1
    assert scan_for(redis, [b"it helped", b"IT HELPED"]) == []


def test_a_second_answer_is_an_ordinary_text(app, client, console, ctx, redis, settings):
    surveyed(app, console, ctx, 1)
    assert text(client, "5", sender=callback_number(1)) == thanks(ctx)

    again = text(client, "5", sender=callback_number(1))

    assert again == text(client, "5", sender=callback_number(9))  # no survey for 9
    assert again != thanks(ctx)
    assert today(redis, settings)["survey:5"] == 1


def test_1_with_no_survey_waiting_is_the_menus_1(app, client, console, ctx):
    surveyed(app, console, ctx, 1)  # someone else's survey
    assert text(client, "MENU", sender=callback_number(2))
    menu_1 = text(client, "1", sender=callback_number(2))

    assert menu_1 != thanks(ctx)
    assert text(client, "MENU", sender=callback_number(3))
    assert menu_1 == text(client, "1", sender=callback_number(3))


def test_a_digit_with_no_survey_waiting_costs_no_extra_redis_round_trip(
    app, client, console, ctx, redis
):
    surveyed(app, console, ctx, 1)  # someone else's survey
    assert text(client, "MENU", sender=callback_number(2))
    redis.config_resetstat()
    assert text(client, "1", sender=callback_number(2)) != thanks(ctx)
    used = {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in redis.info("commandstats").items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }
    # The text's one read, a script (its commands are counted too: the survey is looked
    # for there, with EXISTS, and an open request with HGET), and its one write (the
    # topic's count goes with it).
    assert used == {
        "evalsha": 1,
        "incr": 1,
        "sismember": 1,
        "get": 1,
        "exists": 1,
        "hget": 2,
        "set": 1,
        "hincrby": 1,
        "expire": 1,
    }


def test_a_survey_waiting_traps_nobody_menu_help_and_stop_still_work(
    app, client, console, ctx, redis, settings
):
    surveyed(app, console, ctx, 1)
    ordinary = {word: text(client, word, sender=callback_number(9)) for word in ("MENU", "HELP")}

    for word, reply in ordinary.items():
        assert text(client, word, sender=callback_number(1)) == reply
    assert text(client, "3", sender=callback_number(1)) == thanks(ctx)  # still waiting
    assert today(redis, settings)["survey:3"] == 1


def test_stop_while_a_survey_waits_opts_out_and_the_next_digit_gets_no_thanks(
    app, client, console, ctx, redis, settings
):
    surveyed(app, console, ctx, 1)
    assert text(client, "STOP", sender=callback_number(1)) == ""
    assert text(client, "4", sender=callback_number(1)) == ""
    assert "survey:4" not in today(redis, settings)


def test_a_crisis_phrase_in_an_answer_gets_the_crisis_reply(
    app, client, console, ctx, redis, settings
):
    surveyed(app, console, ctx, 1)

    reply = text(client, "2 he's not waking up", sender=callback_number(1))

    assert reply == text(client, "he's not waking up", sender=callback_number(9))
    assert "999" in reply
    assert thanks(ctx) not in reply
    assert today(redis, settings)["survey:2"] == 1  # the score still counts


def test_a_spanish_caller_is_thanked_in_spanish(app, client, console, ctx):
    surveyed(app, console, ctx, 1, lang="es")
    assert text(client, "5 gracias", sender=callback_number(1)) == thanks(ctx, "es")
    assert thanks(ctx, "es") != thanks(ctx, "en")


def test_an_answer_by_whatsapp_is_taken_too(app, client, console, ctx, redis, settings):
    sender = WHATSAPP.address(callback_number(2))
    text(client, "hola", sender=sender)
    surveyed(app, console, ctx, 2, texts_by=WHATSAPP)
    assert text(client, "1", sender=sender) == thanks(ctx)
    assert today(redis, settings)["survey:1"] == 1


def test_kept_words_are_sealed_on_the_request_and_go_with_it(
    tmp_path, redis_server, redis, ctx, twilio_api
):
    app = create_app(make_settings(tmp_path / "var", redis_server, survey_keep_words=True))
    console = logged_in(app)
    request = surveyed(app, console, ctx, 1)

    assert text(app.test_client(), "4 she listened", sender=callback_number(1)) == thanks(ctx)

    sealed = redis.hget(REQ + request.id, WORDS_FIELD)
    assert sealed is not None and ctx.sealer.open(sealed, request.id) == "she listened"
    assert scan_for(redis, [b"she listened"]) == []
    # When they ask again, the counsellor who takes it reads what they said.
    again = ask(app, 1)
    post(console, "/console/take")
    page = console.get(f"/console/requests/{again.id}").get_data(as_text=True)
    assert "<q>she listened</q>" in page
    ctx.queue.clock = FakeClock(time.time() + 31 * 24 * 60 * MINUTE)
    assert ctx.queue.purge(ctx.settings.retention_days * 24 * 60 * 60) == 1  # the closed one
    assert not redis.exists(REQ + request.id)
