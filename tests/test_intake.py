"""Asking for a counsellor's call back, by phone and by text, through the signed webhooks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as redis_py
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.jobs import job_queue
from helpline.callbacks.queue import COMPLETED, CallbackQueue, Contact, Outcome, Priority, Status
from helpline.conversation.channels import SMS, TEXTING, Channel
from helpline.infrastructure import embedded
from helpline.web.services import helpline
from tests.factories import (
    USABLE_CALLER,
    Call,
    call_params,
    callback_number,
    make_settings,
    parse_voice,
    scan_for_numbers,
    text,
    twilio_post,
)

CALLER = USABLE_CALLER
OTHER = callback_number(42)


def _queue(client: FlaskClient) -> CallbackQueue:
    with client.application.app_context():
        return helpline().queue


# -- voice -----------------------------------------------------------------------------


def test_caller_is_queued_on_their_own_number_and_told_their_place(client, redis) -> None:
    call = Call(client)
    assert "press 4" in call.step.text
    triage = call.press("4")
    assert "at risk of an overdose" in triage.text
    screen = call.press("2")
    assert "have you had a break from using" in screen.text
    confirm = call.press("2")
    assert "ending in 1 0 7" in confirm.text  # callback_number(7) ends 107
    call.press("1", "1")  # this number; voicemail is safe
    done = call.press("2")  # texts are not

    assert "You're now on the list" in done.text
    assert "You are number 1 in the queue." in done.text
    assert "as soon as we can" in done.text
    [request] = _queue(client).active()
    assert request.priority is Priority.NORMAL and request.channel == "voice"
    assert (request.voicemail_ok, request.texts_ok) == (True, False)
    assert _queue(client).phone(request.id) == CALLER


def test_at_risk_caller_hears_the_emergency_advice_first_and_goes_to_the_front(
    client, redis
) -> None:
    Call(client, sender=callback_number(1)).press("4", "2", "2", "1", "1", "1")
    call = Call(client)
    urgent = call.say("counsellor")
    assert "at risk" in urgent.text
    after = call.say("yes")
    assert after.says[0].startswith("Thank you for telling us. Please don't wait for our call.")
    assert "Samaritans, free, on 1 1 6, 1 2 3" in after.says[0]
    assert after.says[0].endswith("hang up now and call 9 9 9.")
    assert "mark your call back as urgent" in after.text
    call.say("no")  # no break from using
    done = call.press("1", "1", "1")

    assert "You are number 1 in the queue." in done.text
    assert _queue(client).active()[0].priority is Priority.URGENT


def test_withheld_caller_keys_in_a_number_which_never_appears_in_the_url(client, redis) -> None:
    call = Call(client, sender="anonymous")
    ask = call.press("4", "2", "2")
    assert "key in the number" in ask.text
    assert ask.gather is not None and ask.gather.get("finishOnKey") == "#"
    bad = call.press("12345")
    assert "doesn't seem to be a full phone number" in bad.text
    next_step = call.press("0012025550188")

    assert "leave a voicemail" in next_step.text
    assert "2025550188" not in next_step.action and "0188" not in next_step.action
    call.press("2", "2")
    [request] = _queue(client).active()
    assert _queue(client).phone(request.id) == "+12025550188"


def test_answers_do_not_carry_over_to_another_call(client, redis) -> None:
    call = Call(client, sender="anonymous")
    call.press("4", "2", "2", "0012025550188")
    stolen = call.step.action
    other = call_params(sender="anonymous")  # another CallSid replays the URL
    response = twilio_post(client, stolen, {**other, "Digits": "1"})
    step = parse_voice(response.get_data(as_text=True))
    response = twilio_post(client, step.action, {**other, "Digits": "1"})
    result = parse_voice(response.get_data(as_text=True))

    assert "couldn't take your request" in result.text
    assert _queue(client).active() == []


def test_a_retried_final_step_queues_once(client, redis) -> None:
    call = Call(client)
    call.press("4", "2", "2", "1", "1")
    final = call.step.action
    first = twilio_post(client, final, {**call.params, "Digits": "1"}).get_data(as_text=True)
    again = twilio_post(client, final, {**call.params, "Digits": "1"}).get_data(as_text=True)

    assert "You're now on the list" in parse_voice(first).text
    assert "already on our list" in parse_voice(again).text
    assert len(_queue(client).active()) == 1


def test_asking_again_keeps_the_callers_place(client, redis) -> None:
    Call(client).press("4", "2", "2", "1", "1", "1")
    Call(client, sender=OTHER).press("4", "2", "2", "1", "1", "1")
    again = Call(client, sender=OTHER).press("4")

    # Told at once, before any question of the intake.
    assert again.text.startswith("You're already on our list for a call back")
    assert "number 2 in the queue" in again.text
    assert "at risk" not in again.text and "press 1, or say urgent" in again.text
    assert len(_queue(client).active()) == 2


def test_crisis_speech_from_a_queued_caller_makes_the_request_urgent(client, redis) -> None:
    Call(client, sender=OTHER).press("4", "2", "2", "1", "1", "1")
    Call(client).press("4", "2", "2", "1", "1", "1")
    Call(client).say("he's not breathing")

    first = _queue(client).active()[0]
    assert first.priority is Priority.URGENT
    assert _queue(client).phone(first.id) == CALLER


def test_a_caller_with_an_open_request_hears_their_place_before_any_question(client, redis) -> None:
    Call(client, sender=OTHER).press("4", "2", "2", "1", "1", "1")
    for body in ("TALK", "2", "2", "1", "1", "1"):  # asked by text, now calls
        text(client, body)

    told = Call(client).press("4")

    assert told.says[0] == "You're already on our list for a call back, so you keep your place."
    assert told.says[1] == "You are number 2 in the queue."
    assert "press 1, or say urgent" in told.text and "call 9 9 9" in told.text
    assert "at risk" not in told.text and "ending in" not in told.text
    assert len(_queue(client).active()) == 2


def test_a_caller_without_an_open_request_is_asked_the_questions_as_before(client, redis) -> None:
    Call(client, sender=OTHER).press("4", "2", "2", "1", "1", "1")

    assert "at risk of an overdose" in Call(client).press("4").text


def test_redis_down_when_queued_people_ask_again_gives_the_emergency_number(
    tmp_path: Path,
) -> None:
    redis_dir = tmp_path / "redis"  # a Redis of this test's own, to stop
    url, _ = embedded.ensure_running(redis_dir)
    app = create_app(make_settings(tmp_path / "var", url))
    client = app.test_client()
    try:
        ask_by_text(client)
        call = Call(client, sender=OTHER)
        call.press("4", "2", "2", "1", "1", "1")
        call.press("0")
        assert "already on our list" in text(client, "TALK")
        embedded.stop(redis_dir)

        texted = text(client, "TALK")
        called = call.press("4")
    finally:
        embedded.stop(redis_dir)
        app.extensions["redis"].close()

    assert texted.startswith("Sorry, we couldn't take your request just now")
    assert "Call 999 now" in texted and "already on our list" not in texted
    assert "couldn't take your request" in called.text and "call 9 9 9" in called.text
    assert "already on our list" not in called.text and called.gather is not None


DAY = 24 * 60 * 60
DAY = 24 * 60 * 60


def park(client: FlaskClient, outcome: Outcome) -> None:
    """Have a counsellor take the next caller and put them off (missed, or "later")."""
    queue = _queue(client)
    claimed = queue.claim_next("sam")
    assert claimed is not None
    later = time.time() + 2 * DAY if outcome is Outcome.CALL_BACK_LATER else None
    queue.record(claimed.id, "sam", outcome, call_back_at=later)
    assert queue.counts()["scheduled"] == 1


def assert_caller_is_next(client: FlaskClient, *, urgent: bool) -> None:
    """Check the caller's request is in the line now (nothing parked) and taken next."""
    queue = _queue(client)
    assert queue.counts()["scheduled"] == 0
    [first, *_] = queue.active()
    assert first.status is Status.WAITING and first.due_at is None
    assert first.urgent is urgent and queue.phone(first.id) == CALLER


def ask_by_text(client: FlaskClient, sender: str = CALLER) -> None:
    """Ask for a call back by text: not at risk, on this number, voicemail and texts safe."""
    for body in ("TALK", "2", "2", "1", "1", "1"):
        text(client, body, sender=sender)


@pytest.mark.parametrize("outcome", [Outcome.NO_ANSWER, Outcome.CALL_BACK_LATER])
def test_at_risk_caller_whose_request_was_parked_goes_to_the_front_now(
    client, redis, outcome
) -> None:
    Call(client).press("4", "2", "2", "1", "1", "1")
    park(client, outcome)
    Call(client, sender=OTHER).press("4", "2", "2", "1", "1", "1")

    call = Call(client)
    again = call.press("4")  # asking again brings it back into the line, at its old place
    assert "already on our list" in again.text and "number 1 in the queue" in again.text
    done = call.press("1")  # things have got worse

    assert "Your call back is now urgent." in done.text and "9 9 9" in done.text
    assert "You are number 1 in the queue." in done.text
    assert "getting ready to call you now" not in done.text
    assert_caller_is_next(client, urgent=True)


def test_at_risk_texter_whose_call_back_was_put_off_goes_to_the_front_now(client, redis) -> None:
    ask_by_text(client)
    park(client, Outcome.CALL_BACK_LATER)
    ask_by_text(client, sender=OTHER)

    again = text(client, "TALK")
    assert "already on our list" in again and "Reply URGENT" in again
    reply = text(client, "urgent")

    assert reply.startswith("Thank you. Your call back is now urgent. Don't wait for us:")
    assert "call 999 or Samaritans, free, on 116 123 now" in reply
    assert "You're number 1 in the queue." in reply
    assert "getting ready to call you now" not in reply
    assert_caller_is_next(client, urgent=True)


def test_crisis_text_brings_a_parked_request_to_the_front_now(client, redis) -> None:
    ask_by_text(client)
    park(client, Outcome.NO_ANSWER)
    ask_by_text(client, sender=OTHER)

    assert text(client, "he's blue and won't wake up").startswith("If someone has overdosed")

    assert_caller_is_next(client, urgent=True)


def test_caller_asking_again_after_a_missed_call_rejoins_the_line_and_hears_their_place(
    client, redis
) -> None:
    Call(client).press("4", "2", "2", "1", "1", "1")
    park(client, Outcome.NO_ANSWER)
    Call(client, sender=OTHER).press("4", "2", "2", "1", "1", "1")

    again = Call(client).press("4")

    assert "already on our list" in again.text
    assert "You are number 1 in the queue." in again.text
    assert "getting ready to call you now" not in again.text
    assert_caller_is_next(client, urgent=False)


def test_caller_whose_call_back_is_being_made_hears_a_counsellor_is_getting_ready(
    client, redis
) -> None:
    Call(client).press("4", "2", "2", "1", "1", "1")
    assert _queue(client).claim_next("sam") is not None

    again = Call(client).press("4")

    assert "already on our list" in again.text
    assert "A counsellor is getting ready to call you now." in again.text
    assert "in the queue" not in again.text


def test_asking_again_in_the_same_call_after_the_request_was_closed_queues_a_new_one(
    client, redis
) -> None:
    call = Call(client)
    call.press("4", "2", "2", "1", "1", "1")
    [closed] = _queue(client).active()
    assert _queue(client).claim_next("sam") is not None
    _queue(client).record(closed.id, "sam", Outcome.WRONG_NUMBER)

    again = call.press("*", "4", "2", "2", "1", "1", "1")

    assert "You're now on the list" in again.text
    assert "already on our list" not in again.text
    assert "You are number 1 in the queue." in again.text
    [request] = _queue(client).active()
    assert request.id != closed.id and request.status is Status.WAITING


def test_at_risk_answer_the_second_time_in_a_call_makes_the_request_urgent(client, redis) -> None:
    Call(client, sender=OTHER).press("4", "2", "2", "1", "1", "1")
    call = Call(client)
    call.press("4", "2", "2", "1", "1", "1")

    assert "already on our list" in call.press("*", "4").text
    done = call.press("1")

    assert "Your call back is now urgent." in done.text
    assert "You are number 1 in the queue." in done.text
    assert_caller_is_next(client, urgent=True)
    assert len(_queue(client).active()) == 2


def test_redis_down_while_queueing_says_so_plainly_with_the_safety_essentials(
    client, redis
) -> None:
    call = Call(client)
    call.press("4", "2", "2", "1", "1")
    services = client.application.extensions["helpline"]
    services.store.client.connection_pool.reset()
    port_closed = redis_py.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    services.queue.client = port_closed
    try:
        failed = call.press("1")
    finally:
        port_closed.close()

    assert "couldn't take your request" in failed.text
    assert "not on the list" in failed.text
    assert "9 9 9" in failed.text and "Samaritans" in failed.text
    assert "don't use alone" in failed.text
    assert "You're now on the list" not in failed.text
    assert failed.gather is not None  # the caller can still use the menu


# -- texts, by SMS and WhatsApp ---------------------------------------------------------


@pytest.fixture(params=TEXTING, ids=lambda channel: channel.name)
def channel(request) -> Channel:
    return request.param


def test_texter_asks_by_keyword_and_is_queued_on_their_number(client, redis, channel) -> None:
    me = channel.address(CALLER)
    assert "at risk of overdose" in text(client, "TALK", sender=me)
    assert "Had a break from using" in text(client, "2", sender=me)
    # A WhatsApp sender's number is offered to call back, just as a texter's is.
    assert "Shall we call you on this number?" in text(client, "2", sender=me)
    assert "voicemail" in text(client, "1", sender=me)
    assert "text you" in text(client, "2", sender=me)
    reply = text(client, "yes", sender=me)

    assert "You're on the list" in reply and "You're number 1 in the queue." in reply
    [request] = _queue(client).active()
    assert (request.channel, request.voicemail_ok, request.texts_ok) == (channel.name, False, True)
    assert request.texts_by == channel.name  # later texts go back the way they wrote
    assert _queue(client).phone(request.id) == CALLER
    assert redis.hget(f"helpline:cb:req:{request.id}", "phone") != CALLER.encode()


@pytest.mark.parametrize("word", ["talk", "Call me", "COUNSELOR", "councellor", "call back"])
def test_close_variants_of_the_keywords_ask_for_a_counsellor(client, redis, word, channel) -> None:
    assert "at risk of overdose" in text(client, word, sender=channel.address(CALLER))


def test_texter_can_send_another_number_and_a_bad_one_is_asked_again(
    client, redis, channel
) -> None:
    me = channel.address(CALLER)
    text(client, "TALK", sender=me)
    text(client, "no", sender=me)
    text(client, "no", sender=me)
    assert "doesn't look like a full phone number" in text(client, "0123", sender=me)
    assert "voicemail" in text(client, "+1 (202) 555-0188", sender=me)
    text(client, "1", sender=me)
    text(client, "1", sender=me)

    [request] = _queue(client).active()
    assert _queue(client).phone(request.id) == "+12025550188"
    assert request.texts_by == "sms"  # a number typed in is texted by SMS
    assert scan_for_numbers(redis, [CALLER, "+12025550188"]) == []


def test_spanish_texter_is_queued_in_spanish(client, redis, channel) -> None:
    me = channel.address(CALLER)
    text(client, "ESPAÑOL", sender=me)
    assert "corres peligro" in text(client, "HABLAR", sender=me)
    for body in ("2", "no", "1", "1"):
        text(client, body, sender=me)
    reply = text(client, "1", sender=me)

    # Accents are folded for GSM-7 by SMS; WhatsApp sends them as written.
    place = "Tienes el numero 1" if channel is SMS else "Tienes el número 1"
    assert f"{place} en la cola." in reply
    assert _queue(client).active()[0].lang == "es"


def test_crisis_text_makes_an_open_request_urgent(client, redis, channel) -> None:
    for sender in (OTHER, CALLER):
        for body in ("TALK", "2", "2", "1", "1", "1"):
            text(client, body, sender=channel.address(sender))
    reply = text(client, "he's blue and won't wake up", sender=channel.address(CALLER))

    assert reply.startswith("If someone has overdosed")
    first = _queue(client).active()[0]
    assert first.priority is Priority.URGENT and _queue(client).phone(first.id) == CALLER


def test_a_confirmation_job_is_queued_with_the_request_id_only(client, redis, channel) -> None:
    me = channel.address(CALLER)
    for body in ("TALK", "2", "2", "no"):
        text(client, body, sender=me)
    text(client, "+1 202 555 0188", sender=me)  # someone else's phone: they are told by text
    text(client, "1", sender=me)
    text(client, "1", sender=me)

    [request] = _queue(client).active()
    jobs = job_queue(redis)
    [job] = [jobs.fetch_job(job_id) for job_id in jobs.job_ids]
    assert job is not None and job.args == [request.id]
    assert job.func_name == "workers.jobs.confirm_request"


def test_no_confirmation_text_when_the_reply_already_told_them(client, redis, channel) -> None:
    for body in ("TALK", "2", "2", "1", "1", "1"):
        text(client, body, sender=channel.address(CALLER))

    assert job_queue(redis).count == 0
    assert redis.zcard("helpline:cb:unconfirmed") == 0


# -- hours and waits -------------------------------------------------------------------


@pytest.fixture
def closed_client(tmp_path: Path, redis_server: str, redis) -> FlaskClient:
    # Open only for one minute a week: any test run is almost surely out of hours.
    settings = make_settings(
        tmp_path / "var", redis_server, hours="Mon 03:00-03:01", timezone="Europe/London"
    )
    return create_app(settings).test_client()


def test_out_of_hours_callers_are_queued_and_told_when_call_backs_resume(closed_client) -> None:
    for body in ("TALK", "2", "2", "1", "1"):
        text(closed_client, body)
    reply = text(closed_client, "1")

    assert "Counsellors are off duty now. Call backs start again" in reply
    assert "at 3:00" in reply
    assert "You're number 1 in the queue." in reply
    assert [r.status for r in _queue(closed_client).active()] == [Status.WAITING]


def test_wait_is_estimated_from_recent_callbacks(client, redis) -> None:
    queue = _queue(client)
    now = time.time()
    # Two callbacks reached ten minutes apart: one every ten minutes.
    for n, at in ((1, now - 600), (2, now)):
        contact = Contact(callback_number(n), True, True)
        queue.enqueue(contact, channel="sms", lang="en", urgent=False)
        claimed = queue.claim_next("sam")
        assert claimed is not None
        queue.record(claimed.id, "sam", Outcome.REACHED)
        redis.zadd(COMPLETED, {claimed.id: at}, xx=True)
    for body in ("TALK", "2", "2", "1", "1"):
        text(client, body)
    reply = text(client, "1")

    assert "We expect to call in about 10 min." in reply


def test_one_sender_keeps_one_open_request_whichever_number_each_ask_names(
    client, redis, channel
) -> None:
    me = channel.address(CALLER)
    for body in ("TALK", "2", "2", "no", "+1 202 555 0188", "1", "1"):  # a stranger's phone
        text(client, body, sender=me)
    # Asking again, for another stranger: told at once, before any question.
    reply = text(client, "TALK", sender=me)
    assert reply.startswith("You're already on our list for a call back")
    assert "You're number 1 in the queue." in reply
    [request] = _queue(client).active()
    assert _queue(client).phone(request.id) == "+12025550188"
    # Only the first stranger is ever texted a confirmation.
    assert len(job_queue(redis).get_jobs()) == 1

    # Once it is closed, the sender may ask again.
    queue = _queue(client)
    queue.claim_next("alex")
    queue.record(request.id, "alex", Outcome.REACHED)
    for body in ("TALK", "2", "2", "no", "+1 202 555 0199", "1", "1"):
        reply = text(client, body, sender=me)
    assert "You're on the list" in reply
    [again] = _queue(client).active()
    assert _queue(client).phone(again.id) == "+12025550199"


def test_a_texter_with_an_open_request_is_told_their_place_in_the_first_reply(
    client, redis, channel
) -> None:
    me = channel.address(CALLER)
    ask_by_text(client, sender=OTHER)
    for body in ("TALK", "2", "2", "1", "1", "1"):
        text(client, body, sender=me)
    [_, mine] = _queue(client).active()
    jobs = len(job_queue(redis).get_jobs())

    reply = text(client, "TALK", sender=me)

    lines = reply.split("\n")
    assert lines[0] == "You're already on our list for a call back and keep your place."
    assert lines[1] == "You're number 2 in the queue."
    assert lines[-1] == "Things got worse? Reply URGENT. In danger? Call 999. 0 Menu."
    assert "at risk" not in reply and "this number" not in reply  # no question asked
    assert [r.id for r in _queue(client).active()] == [_queue(client).active()[0].id, mine.id]
    assert len(job_queue(redis).get_jobs()) == jobs  # nobody is texted again


def test_a_texter_on_the_list_who_texts_urgent_goes_to_the_front(client, redis, channel) -> None:
    me = channel.address(CALLER)
    ask_by_text(client, sender=OTHER)
    for body in ("TALK", "2", "2", "1", "1", "1"):
        text(client, body, sender=me)
    text(client, "MENU", sender=me)

    reply = text(client, "URGENT", sender=me)

    assert reply.startswith("Thank you. Your call back is now urgent.")
    assert "call 999" in reply and "You're number 1 in the queue." in reply
    [first, second] = _queue(client).active()
    assert first.urgent and _queue(client).phone(first.id) == CALLER
    assert not second.urgent


def test_urgent_from_a_texter_with_no_request_starts_the_request(client, redis, channel) -> None:
    reply = text(client, "URGENT", sender=channel.address(CALLER))

    assert reply.startswith("A counsellor can call you back. First: are you at risk")
    assert _queue(client).active() == []


def test_a_queue_failing_after_the_read_still_says_they_are_listed_and_gives_999(
    client, redis
) -> None:
    ask_by_text(client)
    services = client.application.extensions["helpline"]
    port_closed = redis_py.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    services.queue.client = port_closed  # the text's read still works; the queue does not
    try:
        again = text(client, "TALK")
        worse = text(client, "URGENT")
    finally:
        port_closed.close()

    assert again.startswith("Sorry, we couldn't check your call back just now.")
    assert "you're still on our list" in again and "Call 999 now" in again
    assert worse.startswith("Sorry, we couldn't mark your call back urgent just now.")
    assert "call 999 now" in worse


def test_requests_without_a_known_sender_are_each_their_own(client) -> None:
    queue = _queue(client)
    for n in (1, 2):  # withheld callers who keyed in a number: nobody to hold to one request
        contact = Contact(callback_number(60 + n), voicemail_ok=False, texts_ok=False)
        queue.enqueue(contact, channel="voice", lang="en", urgent=False, sender="")
    assert len(queue.active()) == 2


def _block(client: FlaskClient, number: str) -> None:
    with client.application.app_context():
        helpline().blocks.add(number, reason="Abusive texts", days=30, by="sam")


def test_a_blocked_texter_still_gets_safety_but_cannot_queue_a_call_back(
    client, redis, channel
) -> None:
    _block(client, CALLER)
    me = channel.address(CALLER)
    for body in ("TALK", "2", "2", "1", "1"):
        text(client, body, sender=me)
    reply = text(client, "1", sender=me)

    assert "We can't take a call back request from this number" in reply
    assert "116 123" in reply and "999" in reply  # another line, and the emergency number
    assert _queue(client).active() == []
    assert job_queue(redis).count == 0
    assert text(client, "he's not breathing", sender=me).startswith("If someone has overdosed")
    assert text(client, "SAFE", sender=me).startswith("After any break")


def test_a_blocked_texter_cannot_queue_a_call_back_for_someone_else_either(client) -> None:
    _block(client, CALLER)
    for body in ("TALK", "2", "2", "no", "+1 202 555 0188", "1"):
        text(client, body)
    assert "We can't take a call back request" in text(client, "1")
    assert _queue(client).active() == []


def test_a_blocked_caller_hears_why_and_where_else_to_turn(client) -> None:
    _block(client, CALLER)
    call = Call(client, sender=CALLER)
    call.press("4")
    call.press("2")
    call.press("2")
    call.press("1")
    call.press("1")
    step = call.press("1")
    assert "We can't take a call back request from this number" in step.text
    assert "9 9 9" in step.text and step.action  # and they can go back to the menu
    assert _queue(client).active() == []
