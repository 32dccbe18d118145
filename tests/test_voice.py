"""The phone menu: keys and speech, reprompts, the safe goodbye, position in the URL."""

from __future__ import annotations

import pytest

from tests.factories import call_params, parse_voice, twilio_post


def call(client):  # type: ignore[no-untyped-def]
    return parse_voice(twilio_post(client, "/twilio/voice", call_params()).get_data(as_text=True))


def answer(client, step, digits: str = "", speech: str = ""):  # type: ignore[no-untyped-def]
    params = call_params()
    if digits:
        params["Digits"] = digits
    if speech:
        params["SpeechResult"] = speech
    response = twilio_post(client, step.action, params)
    assert response.status_code == 200
    return parse_voice(response.get_data(as_text=True))


def test_greeting_offers_keypad_and_speech_with_hints_and_spanish(client):
    step = call(client)
    assert step.gather.attrib["input"] == "dtmf speech"
    assert step.gather.attrib["actionOnEmptyResult"] == "true"
    assert "my son" in step.gather.attrib["hints"]
    assert step.says[-1] == "Para español, marca el 9."
    assert step.gather.findall("Say")[-1].attrib["language"] == "es-ES"


@pytest.mark.parametrize(
    ("speech", "start"),
    [
        ("overdose", "If someone has overdosed"),  # the emergency advice, then the topic
        ("naloxone please", "Overdose safety."),
        ("I'm worried about my son", "Worried about someone else."),
        ("treatment", "Dependence, treatment and recovery."),
        ("my friend is not breathing", "If someone has overdosed"),
    ],
)
def test_speech_routes_to_the_right_branch(client, speech, start):
    step = answer(client, call(client), speech=speech)
    assert step.says[0].startswith(start)


def test_message_can_be_repeated_or_left_for_the_main_menu(client):
    # Overdose safety; no break from using; naloxone.
    step = answer(client, answer(client, answer(client, call(client), "1"), "2"), "3")
    assert step.says[0].startswith("Naloxone can reverse an opioid overdose")
    again = answer(client, step, "1")
    assert again.says == step.says
    menu = answer(client, step, "*")
    assert menu.says[0].startswith("For overdose safety, press 1")


def test_two_reprompts_then_the_safety_essentials_and_goodbye(client):
    step = call(client)
    first = answer(client, step)  # silence
    assert first.says[0] == "Sorry, I didn't catch that."
    second = answer(client, first, "7")  # a key that means nothing here
    assert second.says[0] == "Sorry, I didn't catch that."
    goodbye = answer(client, second)
    assert goodbye.gather is None and goodbye.hangup
    assert "call 9 9 9" in goodbye.text and "don't use alone" in goodbye.text
    assert "tolerance falls" in goodbye.text


def test_choosing_spanish_replays_the_greeting_in_spanish(client):
    step = answer(client, call(client), "9")
    assert step.says[0].startswith("Hola, gracias por llamar")
    assert "llama al 9 9 9" in step.says[1]
    assert step.gather.attrib["language"] == "es-ES"
    assert answer(client, step, "1").says[0].startswith("Seguridad ante una sobredosis")


def test_a_stale_or_tampered_position_starts_the_call_over_safely(client):
    params = call_params(Digits="1")
    response = twilio_post(client, "/twilio/voice/step?node=no_such_node&lang=xx&r=99", params)
    step = parse_voice(response.get_data(as_text=True))
    assert response.status_code == 200
    assert "call 9 9 9" in step.says[1]
