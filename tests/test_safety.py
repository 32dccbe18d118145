"""Safety holes found by trying the service as callers and texters would, closed for good.

Each test drives the real signed webhooks. The explorer (tests/test_explore.py) proves
the same properties over every state; these show them as a person meets them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from helpline import create_app
from helpline.callbacks.queue import Priority
from helpline.web.services import helpline
from tests.factories import CALLER, Call, make_settings, text

# Nothing listens on port 1: every Redis call fails at once, as in a real outage.
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_down(tmp_path: Path) -> Iterator[FlaskClient]:
    """The app with a Redis it can never reach."""
    app = create_app(make_settings(tmp_path / "var", NO_REDIS))
    yield app.test_client()
    app.extensions["redis"].close()


def _open_requests(client: FlaskClient):  # type: ignore[no-untyped-def]
    with client.application.app_context():
        return helpline().queue.active()


# -- 1. Redis down: no question that only a kept conversation could answer ---------------


def test_texting_talk_with_redis_down_says_plainly_no_call_back_and_gives_the_numbers(
    redis_down,
) -> None:
    reply = text(redis_down, "TALK")

    assert "at risk" not in reply  # the triage question would be read as a menu choice
    assert "couldn't take your request" in reply and "not on the list" in reply
    assert "999" in reply and "Samaritans" in reply
    assert reply.endswith("Text MENU for all options. In danger? Call 999.")


def test_with_redis_down_every_text_reply_names_the_emergency_number(redis_down) -> None:
    for body in ("TALK", "1", "yes", "SAFE", "2", "hello", "RECOVERY", "3"):
        assert "999" in text(redis_down, body), body


def test_with_redis_down_a_caller_asking_for_a_call_back_is_told_before_any_question(
    redis_down,
) -> None:
    asked = Call(redis_down).press("4")

    assert "at risk" not in asked.text
    assert "couldn't take your request" in asked.text
    assert "9 9 9" in asked.text and "Samaritans" in asked.text
    assert asked.gather is not None  # the menu is still there


# -- 2. Number entry always ends ---------------------------------------------------------


def test_keying_a_wrong_number_three_times_ends_the_call_with_the_safety_essentials(
    client, redis
) -> None:
    call = Call(client)
    entry = call.press("4", "2", "2", "2")  # not at risk; a different number
    assert "key in the number" in entry.text and "press star" in entry.text

    first, second = call.press("12").text, call.press("34").text
    goodbye = call.press("56")

    assert "doesn't seem to be a full phone number" in first and second
    assert goodbye.hangup and goodbye.gather is None
    assert "9 9 9" in goodbye.text and "don't use alone" in goodbye.text


def test_star_leaves_number_entry_for_the_main_menu(client, redis) -> None:
    call = Call(client, sender="anonymous")  # withheld: asked to key a number at once
    assert "key in the number" in call.press("4", "2", "2").text

    assert "press 4" in call.press("*").text


def test_texting_a_wrong_number_three_times_returns_to_the_menu(client, redis) -> None:
    text(client, "TALK")
    text(client, "2")  # not at risk
    text(client, "2")  # no break from using
    text(client, "2")  # neither "1" (this number) nor a number

    assert "doesn't look like a full phone number" in text(client, "12345")
    menu = text(client, "678")
    assert "Reply 1 Overdose safety" in menu and "999" in menu


# -- 3. A caller ID we cannot call is never offered --------------------------------------


def test_a_texter_whose_number_cannot_be_called_is_asked_for_one_at_once(client, redis) -> None:
    text(client, "TALK", sender=CALLER)  # CALLER: a number phonenumbers rejects
    text(client, "2", sender=CALLER)  # not at risk
    asked = text(client, "2", sender=CALLER)  # no break from using

    assert "call you on this number" not in asked
    assert "send the number we should call" in asked
    assert "voicemail" in text(client, "+1 202 555 0188", sender=CALLER)
    text(client, "1", sender=CALLER)
    assert "on the list" in text(client, "1", sender=CALLER)


def test_a_caller_whose_number_cannot_be_called_keys_one_in(client, redis) -> None:
    call = Call(client, sender=CALLER)

    assert "key in the number" in call.press("4", "2", "2").text
    assert "ending in" not in call.step.text


# -- 4. A crisis phrase mid-request keeps the request, now urgent ------------------------


def test_crisis_speech_during_the_call_back_questions_keeps_the_request_as_urgent(
    client, redis
) -> None:
    call = Call(client)
    assert "voicemail" in call.press("4", "2", "2", "1").text  # not at risk, this number

    interrupted = call.say("I think he's not breathing")
    assert interrupted.says[0].startswith("If someone has overdosed")
    assert "9 9 9" in interrupted.says[0]
    assert "voicemail" in interrupted.says[-1]  # then the request carries on
    done = call.press("1", "1")

    assert "You're now on the list" in done.text
    [request] = _open_requests(client)
    assert request.priority is Priority.URGENT


def test_crisis_text_at_the_triage_question_marks_the_request_urgent_and_carries_on(
    client, redis
) -> None:
    text(client, "TALK")
    reply = text(client, "my friend overdosed")

    assert reply.startswith("If someone has overdosed") and "999" in reply
    assert "call you on this number" in reply
    text(client, "1")
    text(client, "1")
    assert "on the list" in text(client, "1")
    [request] = _open_requests(client)
    assert request.priority is Priority.URGENT
