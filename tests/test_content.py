"""What callers hear and read is medically right, in both languages and both regions.

Each test goes through the real webhooks, as a caller or texter would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from helpline import create_app
from helpline.application.config import Settings
from helpline.conversation.lint import load_flows
from helpline.conversation.regions import load_region
from tests.factories import Call, make_settings, text

FLOWS = Settings().flows_dir
# Written for the ear: a voice sentence a listener can hold, a message they can follow.
MAX_SENTENCE_WORDS = 25
MAX_MESSAGE_WORDS = 80


def _app(tmp_path: Path, redis_server: str, region: str = "GB", **settings: str) -> Flask:
    region_file = load_region(FLOWS, region)
    return create_app(make_settings(tmp_path / "var", redis_server, region=region_file, **settings))


@pytest.fixture
def us_client(tmp_path: Path, redis_server: str, redis: object) -> FlaskClient:
    return _app(tmp_path, redis_server, "US").test_client()


def _spanish_call(client: FlaskClient) -> Call:
    call = Call(client)
    call.press("9")
    return call


# -- someone is not breathing: breaths or CPR first, the recovery position after ----------


@pytest.mark.parametrize(
    ("lang", "crisis", "breaths", "side"),
    [
        ("en", "he's not breathing", "give rescue breaths or CPR", "recovery position"),
        ("es", "no respira", "dale respiraciones de rescate o RCP", "posición de recuperación"),
    ],
)
def test_the_emergency_message_says_breaths_or_cpr_before_the_recovery_position(
    client, lang, crisis, breaths, side
):
    call = _spanish_call(client) if lang == "es" else Call(client)

    emergency = call.say(crisis).says[0]

    assert breaths in emergency and side in emergency
    assert emergency.index(breaths) < emergency.index(side)
    assert emergency.endswith("9 9 9.")  # "hang up now" ends the message


@pytest.mark.parametrize(
    ("body", "breaths", "side"),
    [
        ("his lips are blue", "Rescue breaths or CPR", "on their side"),
        ("no respira", "Respiraciones de rescate o RCP", "acuéstala de lado"),
    ],
)
def test_the_emergency_text_says_breaths_or_cpr_before_the_recovery_position(
    client, body, breaths, side
):
    if body == "no respira":
        text(client, "ESPAÑOL")

    reply = text(client, body)

    assert reply.index("999") < reply.index(breaths) < reply.index(side)


# -- "at risk of harming yourself": the crisis line, for the caller, in or out of hours ----


@pytest.mark.parametrize("hours", ["always", "Mon 03:00-03:01"], ids=["open", "closed"])
def test_an_at_risk_caller_hears_the_crisis_line_for_themself(tmp_path, redis_server, redis, hours):
    client = _app(tmp_path, redis_server, hours=hours, timezone="Europe/London").test_client()
    call = Call(client)
    call.press("4")

    said = call.press("1").text

    assert "Please don't wait for our call" in said
    assert "Samaritans, free, on 1 1 6, 1 2 3" in said
    assert "hang up now and call 9 9 9." in said


@pytest.mark.parametrize("hours", ["always", "Mon 03:00-03:01"], ids=["open", "closed"])
def test_an_at_risk_texter_reads_the_crisis_line_for_themself(tmp_path, redis_server, redis, hours):
    client = _app(tmp_path, redis_server, hours=hours, timezone="Europe/London").test_client()
    text(client, "TALK")

    reply = text(client, "yes")

    assert "Please don't wait for our call: call 999 or Samaritans, free, on 116 123 now" in reply


def test_a_spanish_at_risk_caller_in_the_us_hears_the_crisis_line_in_spanish(us_client):
    call = _spanish_call(us_client)
    call.press("4")

    said = call.press("1").text

    assert "la línea 9 8 8 (en español: llama y marca 2, o envía AYUDA)" in said
    assert "cuelga ahora y llama al 9 1 1." in said


# -- back from a break: that advice first -------------------------------------------------


def test_a_caller_back_from_a_break_hears_the_after_a_break_advice_first(client):
    call = Call(client)
    assert "have you had a break from using" in call.press("1").text

    advice = call.say("yes")

    assert advice.says[0].startswith("After a break, your tolerance is much lower.")
    assert "first few weeks" in advice.says[0]
    assert "keep naloxone near you" in advice.says[0]
    assert "For using after a break, press 1" in advice.text  # then the topics


def test_a_texter_back_from_a_break_reads_the_after_a_break_advice_first(client):
    text(client, "SAFE")

    reply = text(client, "1")

    assert reply.startswith("After a break (prison, detox, rehab, hospital, even days off)")
    assert "low for weeks" in reply and "naloxone near" in reply


def test_a_spanish_texter_back_from_a_break_reads_it_in_spanish(client):
    text(client, "ESPAÑOL")
    text(client, "SEGURIDAD")

    reply = text(client, "1")

    assert reply.startswith("Tras un tiempo sin consumir")
    assert "semanas" in reply


def test_asking_for_a_call_back_after_a_break_leads_with_that_advice(client):
    call = Call(client)
    call.press("4", "2")

    advice = call.press("1")

    assert advice.says[0].startswith("After a break, your tolerance is much lower.")


# -- naloxone, today's supply, the police: each region's own facts -----------------------


def test_naloxone_supply_is_told_as_the_uk_has_it(client):
    reply = text(client, "NALOXONE")

    assert "needle exchanges and some pharmacies give free naloxone kits" in reply
    assert "You don't need a prescription from them." in reply
    assert "sold in pharmacies" not in reply


def test_naloxone_supply_is_told_as_the_us_has_it(us_client):
    reply = text(us_client, "NALOXONE")

    assert "is sold in pharmacies without a prescription" in reply
    assert "Harm reduction programs give it out free." in reply
    assert "needle exchanges" not in reply


def test_after_naloxone_another_dose_and_staying_with_them(client):
    text(client, "SAFE")
    text(client, "no")

    reply = text(client, "4")

    assert "no response in 2-3 min? Give another dose." in reply
    assert "can't harm someone who hasn't taken opioids" in reply
    assert "stay with them" in reply


@pytest.mark.parametrize(
    ("region", "drug"), [("GB", "Nitazenes"), ("US", "fentanyl")], ids=["GB", "US"]
)
def test_todays_strong_drugs_are_named_for_the_region(tmp_path, redis_server, redis, region, drug):
    client = _app(tmp_path, redis_server, region).test_client()
    text(client, "SAFE")
    text(client, "2")

    reply = text(client, "7")

    assert drug in reply and "more than one naloxone dose" in reply
    assert ("xylazine" in reply) is (region == "US")


def test_the_uk_poll_is_labelled_as_one(client):
    call = Call(client)
    said = call.press("2", "1").text

    assert "In a UK poll in 2009, one person in five" in said  # 2009: said as a year
    assert "Recovery is possible" in said


def test_a_us_caller_hears_the_treatment_line_spelled_and_its_hours_as_a_number(us_client):
    call = _spanish_call(us_client)

    said = call.press("2", "2").text

    assert "en el 1, 8 0 0, 6 6 2, 4 3 5 7. Es gratis, abre las 24 horas" in said
    assert "metadona y la buprenorfina" in said


# -- written for the ear -------------------------------------------------------------------


def test_voice_messages_are_short_in_every_region_and_language():
    library = load_flows(FLOWS)
    content, long = library.content, []
    for region in library.regions.values():
        for lang in content.languages:
            values = region.variables(lang)
            for key in content.messages[lang]:
                if not key.startswith("voice."):
                    continue
                said = content.text(key, lang, values)
                sentences = re.split(r"(?<=[.?!])\s+", said)
                if len(said.split()) > MAX_MESSAGE_WORDS or any(
                    len(s.split()) > MAX_SENTENCE_WORDS for s in sentences
                ):
                    long.append(f"{region.code} {lang} {key}")

    assert long == []
