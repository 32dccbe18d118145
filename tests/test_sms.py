"""Text conversations by SMS and by WhatsApp: keywords, numbered menus, crisis first,
opt-out, retries. Every test runs on both channels."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from helpline.conversation.channels import SMS, TEXTING, WHATSAPP, Channel
from helpline.conversation.engine import State
from helpline.conversation.gsm import segments
from helpline.infrastructure.constants import SMS_STATE_TTL
from helpline.infrastructure.logs import MaskingJsonFormatter
from helpline.reports.tally import local_day
from tests.factories import CALLER, sms_params, sms_replies, twilio_post


@dataclass
class Texter:
    """Someone texting the helpline on one channel; another number is someone else."""

    client: FlaskClient
    channel: Channel

    def __call__(self, body: str, number: str = CALLER, **extra: str) -> list[str]:
        response = twilio_post(self.client, "/twilio/sms", self.params(body, number, **extra))
        assert response.status_code == 200
        assert response.mimetype == "text/xml"
        return sms_replies(response.get_data(as_text=True))

    def params(self, body: str, number: str = CALLER, **extra: str) -> dict[str, str]:
        return sms_params(body, self.channel.address(number), **extra)

    def keys(self, kind: str) -> str:
        """The Redis key (or pattern) this channel keeps `kind` under."""
        return f"helpline:{self.channel.name}:{kind}"


@pytest.fixture(params=TEXTING, ids=lambda channel: channel.name)
def text(client, request) -> Texter:
    return Texter(client, request.param)


@pytest.mark.parametrize("body", ["SAFE", "safe", " Safe! ", "SAEF", "safety", "SAFE please"])
def test_safe_keyword_is_matched_forgivingly(text, body):
    (reply,) = text(body)
    assert reply.startswith("After any break")


@pytest.mark.parametrize(
    ("body", "start"),
    [
        ("RECOVERY", "Dependence is a medical problem"),
        ("family", "Pick a calm, private time"),
        ("HELP", "Helpline: general info"),
        ("info", "Helpline: general info"),
        ("Naloxone", "Naloxone reverses"),
        ("menu", "Helpline: confidential info"),
    ],
)
def test_each_keyword_leads_to_its_topic(text, body, start):
    (reply,) = text(body)
    assert reply.startswith(start)


def test_numbered_replies_walk_the_menu_with_state_per_number(text):
    assert text("hi")[0].startswith("Helpline: confidential info")
    assert text("2")[0].startswith("Dependence is a medical problem")
    assert text("2")[0].startswith("Treatment helps you stabilise")
    # Another number is at the start of its own conversation: "2" is recovery there.
    assert text("2", number="+447700900456")[0].startswith("Dependence")


def test_unrecognised_text_gets_the_menu_never_an_error(text):
    (first,) = text("what is this")
    assert first.startswith("Helpline: confidential info")
    (again,) = text("asdfgh")
    assert again.startswith("Sorry, I didn't understand that.\nHelpline: confidential info")


@pytest.mark.parametrize(
    "body",
    [
        "my friend took too much i think its an overdose",
        "he's not breathing",
        "OD",
        "she is unconscious",
        "his lips are blue",
    ],
)
def test_crisis_phrases_get_the_emergency_reply_whatever_the_state(text, body):
    text("2")  # mid-way through the recovery menu
    (reply,) = text(body)
    assert reply.startswith(
        "If someone has overdosed, isn't breathing or won't wake up: call 999 NOW."
    )


def test_spanish_is_chosen_by_keyword_and_kept(text):
    (reply,) = text("español")
    assert reply.startswith("Linea de ayuda")
    # SMS spells Spanish in GSM-7 to save segments; WhatsApp sends it as written.
    assert ("2 Recuperacion" if text.channel is SMS else "2 Recuperación") in reply
    assert "For English, reply ENGLISH." in reply
    (reply,) = text("1")
    assert reply.startswith("Tras un tiempo sin consumir")
    (reply,) = text("ENGLISH")
    assert reply.startswith("Helpline: confidential info")


def test_every_reply_fits_the_channels_length_rule(text):
    for body in ["hi", "1", "2", "3", "4", "0", "ESPANOL", "2", "3", "1", "HELP", "OD", "zzz"]:
        (reply,) = text(body)
        if text.channel is SMS:
            assert segments(reply) <= 2, reply
        else:
            assert len(reply) <= WHATSAPP.max_chars, reply


@pytest.mark.parametrize(
    "word", ["STOP", "stop", "StopAll", "UNSUBSCRIBE", "cancel", "END", "quit", "REVOKE", "OPTOUT"]
)
def test_opt_out_words_record_the_number_and_reply_with_nothing(text, redis, word):
    assert text(word) == []
    assert text("SAFE") == []  # opted out: no more replies
    members = redis.smembers(text.keys("optout"))
    assert len(members) == 1
    assert CALLER.encode() not in next(iter(members))
    assert b"7700900123" not in next(iter(members))


def test_opt_out_needs_the_word_alone(text, redis):
    (reply,) = text("I want to stop using")
    assert reply  # a conversation, not an opt-out
    assert redis.scard(text.keys("optout")) == 0


@pytest.mark.parametrize("word", ["START", "yes", "UNSTOP"])
def test_opt_in_words_clear_the_opt_out(text, redis, word):
    text("STOP")
    (reply,) = text(word)
    assert reply.startswith("Welcome back. You'll get our replies again.")
    assert redis.scard(text.keys("optout")) == 0
    assert text("SAFE")[0].startswith("After any break")


def test_someone_who_opted_out_still_gets_the_emergency_reply(text):
    text("STOP")
    (reply,) = text("my mate is not breathing")
    assert "call 999 NOW" in reply


def test_twilio_retry_of_the_same_message_gets_the_same_reply_and_does_not_advance(client, text):
    text("hi")
    params = text.params("2")
    first = twilio_post(client, "/twilio/sms", params).get_data(as_text=True)
    retry = twilio_post(client, "/twilio/sms", params).get_data(as_text=True)
    assert first == retry
    assert sms_replies(first)[0].startswith("Dependence")
    # The conversation moved once: "1" now picks from the recovery menu.
    assert text("1")[0].startswith("Regular opioid use changes the brain")


def test_a_retry_of_an_earlier_text_still_gets_its_own_reply(client, text):
    text("hi")
    earlier = text.params("2")
    first = twilio_post(client, "/twilio/sms", earlier).get_data(as_text=True)
    text("1")  # a later text moved the conversation on before Twilio retried
    retry = twilio_post(client, "/twilio/sms", earlier).get_data(as_text=True)
    assert retry == first
    assert sms_replies(retry)[0].startswith("Dependence")


def test_a_reply_is_never_replayed_to_another_number(client, text):
    text("2")  # the recovery menu
    params = text.params("1")
    first = twilio_post(client, "/twilio/sms", params).get_data(as_text=True)
    assert sms_replies(first)[0].startswith("Regular opioid use changes the brain")
    # The same MessageSid from another number is answered as that number's own text: a
    # "1" at the start of its conversation, as a third number sending "1" is answered.
    other = dict(params, From=text.channel.address("+447700900456"))
    (reply,) = sms_replies(twilio_post(client, "/twilio/sms", other).get_data(as_text=True))
    assert reply == text("1", number="+447700900789")[0]
    assert not reply.startswith("Regular opioid use changes the brain")


def test_each_text_keeps_one_key_per_number(text, redis):
    for body in ("hi", "2", "1", "menu", "SAFE"):
        text(body)
    kept = {tuple(k.decode().split(":")[:3]) for k in redis.keys("helpline:*")}
    # The conversation, and this minute's count of their texts (the rate limit); WhatsApp
    # also keeps when they last wrote: it opens the 24-hour window for our replies. Beside
    # them only the day's report counts, which name nobody.
    kinds = {"conv", "rate", "window"} if text.channel is WHATSAPP else {"conv", "rate"}
    day = ("helpline", "reports", local_day(ZoneInfo("Europe/London")).isoformat())
    assert kept == {("helpline", text.channel.name, kind) for kind in kinds} | {day}
    assert len(redis.keys(text.keys("conv:*"))) == 1


def test_conversation_state_expires_and_holds_no_number(text, redis):
    text("2")
    keys = [k for k in redis.keys(text.keys("conv:*"))]
    assert len(keys) == 1
    assert 0 < redis.ttl(keys[0]) <= SMS_STATE_TTL
    assert b"7700900123" not in keys[0] and b"7700900123" not in redis.get(keys[0])


def test_status_callbacks_are_accepted_and_counted(client, redis):
    for status in ["delivered", "delivered", "failed", "made-up"]:
        response = twilio_post(
            client, "/twilio/sms/status", {"MessageSid": "SM" + "1" * 32, "MessageStatus": status}
        )
        assert response.status_code == 200
    for status in ["completed", "no-answer"]:
        twilio_post(
            client, "/twilio/voice/status", {"CallSid": "CA" + "1" * 32, "CallStatus": status}
        )
    assert redis.hgetall("helpline:stats:sms") == {
        b"delivered": b"2",
        b"failed": b"1",
        b"other": b"1",
    }
    assert redis.hgetall("helpline:stats:voice") == {b"completed": b"1", b"no-answer": b"1"}


def test_routine_texts_are_logged_only_at_debug_and_then_masked(text, caplog):
    caplog.set_level(logging.INFO)
    text("SAFE")
    assert not [r for r in caplog.records if r.name.startswith("helpline")]

    caplog.set_level(logging.DEBUG)
    text("RECOVERY")
    (record,) = [r for r in caplog.records if r.getMessage() == "sms answered"]
    line = json.loads(MaskingJsonFormatter().format(record))
    assert line["from"] == "***" + CALLER[-3:] and line["node"]
    assert CALLER[-7:] not in json.dumps(line) and "RECOVERY" not in json.dumps(line)


def test_a_stored_state_keeps_every_field(app):
    engine = app.extensions["helpline"].texts.engine
    node = next(n for n in engine.flow.nodes if n != engine.flow.start)
    state = State(engine.flow.id, node, "es", reprompts=1, ended=True, answers={"urgent": "yes"})

    stored = json.loads(json.dumps(state.to_dict()))

    assert set(stored) == {f.name for f in fields(State)}
    assert engine.restore(stored) == state


# -- each channel keeps its own ---------------------------------------------------------


def test_a_whatsapp_and_an_sms_conversation_from_one_number_are_kept_apart(client):
    sms, whatsapp = Texter(client, SMS), Texter(client, WHATSAPP)
    sms("2")  # the recovery menu, by SMS
    # The same number's first WhatsApp message starts its own conversation.
    assert whatsapp("2")[0].startswith("Dependence")
    assert whatsapp("2")[0].startswith("Treatment helps you stabilise")
    assert sms("1")[0].startswith("Regular opioid use changes the brain")


@pytest.mark.parametrize(("stopped", "other"), [(SMS, WHATSAPP), (WHATSAPP, SMS)])
def test_stop_on_one_channel_leaves_the_other_alone(client, redis, stopped, other):
    assert Texter(client, stopped)("STOP") == []
    assert Texter(client, stopped)("SAFE") == []
    (reply,) = Texter(client, other)("SAFE")
    assert reply.startswith("After any break")
    assert redis.scard(f"helpline:{stopped.name}:optout") == 1
    assert redis.scard(f"helpline:{other.name}:optout") == 0


def test_a_whatsapp_message_opens_a_24_hour_window_for_our_messages(client, redis):
    Texter(client, WHATSAPP)("hi")
    (window,) = redis.keys("helpline:whatsapp:window:*")
    assert 23 * 3600 < redis.ttl(window) <= 24 * 3600
    assert b"7700900123" not in window
    Texter(client, SMS)("hi")
    assert redis.keys("helpline:sms:window:*") == []
