"""Rate limits: a flood from one number gets the safety essentials, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_py
from flask import Flask

from helpline import create_app
from helpline.application.config import load_settings
from helpline.application.jobs import job_queue
from helpline.callbacks.queue import Priority
from helpline.infrastructure.errors import ConfigError
from helpline.web.services import helpline
from tests.factories import (
    USABLE_CALLER,
    call_params,
    make_settings,
    parse_voice,
    sms_params,
    sms_replies,
    text,
    twilio_post,
)


@pytest.fixture
def limited(tmp_path: Path, redis_server: str, redis: redis_py.Redis) -> Flask:
    settings = make_settings(tmp_path / "var", redis_server, texts_per_minute=7, calls_per_hour=2)
    return create_app(settings)


def test_a_texter_over_the_limit_gets_the_safety_essentials_and_nothing_is_kept(
    limited: Flask, redis: redis_py.Redis
) -> None:
    client = limited.test_client()
    for body in ("TALK", "2", "2", "1", "1", "1"):  # queued: 6 texts this minute
        text(client, body)
    assert "Shall we call you" not in text(client, "hi")  # the 7th is still answered in full
    [conversation] = redis.keys("helpline:sms:conv:*")
    kept = redis.get(conversation)

    reply = text(client, "RECOVERY")

    with limited.app_context():
        (failsafe,) = sms_replies(helpline().sms_failsafe["en"])
    assert reply == failsafe and "999" in failsafe
    assert "Dependence is a medical problem" not in reply
    assert redis.get(conversation) == kept  # the conversation did not move
    with limited.app_context():
        assert len(helpline().queue.active()) == 1


def test_a_crisis_text_over_the_limit_is_answered_but_raises_no_alert(
    limited: Flask, redis: redis_py.Redis
) -> None:
    client = limited.test_client()
    for body in ("TALK", "2", "2", "1", "1", "1", "hi"):
        text(client, body)
    queued = len(job_queue(redis).get_jobs())

    reply = text(client, "he's not breathing")

    assert reply.startswith("If someone has overdosed")
    with limited.app_context():
        [request] = helpline().queue.active()
    assert request.priority is Priority.NORMAL  # no state written, nothing sent
    assert len(job_queue(redis).get_jobs()) == queued


def test_another_number_is_not_held_back_by_someone_elses_flood(limited: Flask) -> None:
    client = limited.test_client()
    for _ in range(10):
        text(client, "hi")
    assert text(client, "RECOVERY", sender="+12025550142").startswith("Dependence")


def test_a_caller_over_the_hours_calls_hears_the_safety_essentials_and_is_hung_up_on(
    limited: Flask,
) -> None:
    client = limited.test_client()
    for _ in range(2):
        first = parse_voice(
            twilio_post(client, "/twilio/voice", call_params(sender=USABLE_CALLER)).get_data(
                as_text=True
            )
        )
        assert first.action  # the menu, with a way to answer
    response = twilio_post(client, "/twilio/voice", call_params(sender=USABLE_CALLER))
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<Hangup" in body and "9 9 9" in body
    assert "<Gather" not in body
    # Withheld numbers are not one person: never counted.
    for _ in range(4):
        withheld = twilio_post(client, "/twilio/voice", call_params(sender="anonymous"))
        assert "<Gather" in withheld.get_data(as_text=True)


def test_over_the_limit_is_counted_in_the_metrics(tmp_path: Path, redis_server: str, redis) -> None:  # type: ignore[no-untyped-def]
    token = "metrics-" + "x9" * 16
    app = create_app(
        make_settings(tmp_path / "var", redis_server, texts_per_minute=1, metrics_token=token)
    )
    client = app.test_client()

    def limited_count() -> float:
        page = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        line = next(
            (
                line
                for line in page.get_data(as_text=True).splitlines()
                if line.startswith('helpline_rate_limited_total{channel="sms"}')
            ),
            None,
        )
        return float(line.split()[-1]) if line else 0.0

    before = limited_count()
    for _ in range(3):
        twilio_post(client, "/twilio/sms", sms_params("SAFE"))
    assert limited_count() == before + 2


@pytest.mark.parametrize("name", ["HELPLINE_TEXTS_PER_MINUTE", "HELPLINE_CALLS_PER_HOUR"])
def test_limits_must_be_positive_numbers(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a positive number"):
        load_settings({name: "lots"})
    assert load_settings({}).texts_per_minute == 20 and load_settings({}).calls_per_hour == 20
