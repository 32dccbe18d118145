"""Danger said on a call or texted, through the signed webhooks: the right reply first.

The examples callers and texters used when these phrases went unrecognised: overdoses
said in everyday words, in English and Spanish, and words of suicide or self-harm.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from helpline.callbacks.queue import CallbackQueue, Priority
from helpline.web.services import helpline
from tests.factories import USABLE_CALLER, Call, callback_number, text

EMERGENCY_SAID = "If someone has overdosed, is not breathing, or will not wake up"
EMERGENCY_TEXTED = "If someone has overdosed, isn't breathing or won't wake up: call 999 NOW."
EMERGENCIA_DICHA = "Si alguien tuvo una sobredosis, no respira, o no despierta"
EMERGENCIA_ESCRITA = "Si alguien ha tenido una sobredosis, no respira o no despierta"
SAMARITANS_SAID = "Samaritans, free, on 1 1 6, 1 2 3"
SAMARITANS_TEXTED = "Samaritans, free, on 116 123"
# The crisis line in the caller's language (Samaritans answer in English: it says so).
SAMARITANOS_DICHO = "Samaritans, gratis, en el 1 1 6, 1 2 3"
SAMARITANOS_ESCRITO = "Samaritans, gratis, en el 116 123"


def _queue(client: FlaskClient) -> CallbackQueue:
    with client.application.app_context():
        return helpline().queue


@pytest.mark.parametrize(
    "speech",
    [
        "he's not waking up",
        "she won't wake",
        "he's gone blue",
        "I think he's OD-ing",
        "he took an overdose",
        "i think he's dying",
    ],
)
def test_spoken_overdose_in_everyday_words_gets_the_emergency_advice_first(client, speech):
    step = Call(client).say(speech)

    assert step.says[0].startswith(EMERGENCY_SAID)
    assert "call 9 9 9" in step.says[0]


@pytest.mark.parametrize(
    "body", ["not responding", "took too much", "his lips are grey", "i think he's dying"]
)
def test_texted_overdose_in_everyday_words_gets_the_emergency_reply_first(client, body):
    text(client, "2")  # mid-way through the recovery menu

    assert text(client, body).startswith(EMERGENCY_TEXTED)


@pytest.mark.parametrize("speech", ["le dio una sobredosis", "no reacciona", "labios morados"])
def test_spoken_spanish_overdose_gets_the_spanish_emergency_advice_first(client, speech):
    call = Call(client)
    call.press("9")

    step = call.say(speech)

    assert step.says[0].startswith(EMERGENCIA_DICHA)


@pytest.mark.parametrize("body", ["le dio una sobredosis", "no reacciona", "labios morados"])
def test_texted_spanish_overdose_gets_the_spanish_emergency_reply_first(client, body):
    text(client, "ESPAÑOL")

    assert text(client, body).startswith(EMERGENCIA_ESCRITA)


def test_saying_sobredosis_on_the_spanish_menu_opens_overdose_safety_after_the_advice(client):
    call = Call(client)
    call.press("9")

    step = call.say("sobredosis")

    assert step.says[0].startswith(EMERGENCIA_DICHA)
    assert step.says[1].startswith("Seguridad ante una sobredosis.")


@pytest.mark.parametrize("speech", ["overdose", "overdose safety"])
def test_saying_the_overdose_topic_opens_it_with_the_emergency_line(client, speech):
    step = Call(client).say(speech)

    assert step.says[0].startswith(EMERGENCY_SAID)
    assert step.says[1].startswith("Overdose safety.")
    assert step.gather is not None


@pytest.mark.parametrize("body", ["overdose", "sobredosis"])
def test_texting_the_overdose_word_gets_the_emergency_reply_and_the_way_to_the_signs(client, body):
    reply = text(client, body)

    assert reply.startswith(EMERGENCY_TEXTED)
    assert "Reply 1 Signs of overdose" in reply


@pytest.mark.parametrize(
    "speech", ["I want to kill myself", "suicidal", "I want to end my life", "she's suicidal"]
)
def test_spoken_self_harm_gets_the_emergency_number_and_the_crisis_line_first(client, speech):
    call = Call(client)
    call.press("1")  # in the overdose safety menu

    step = call.say(speech)

    assert step.says[0].startswith("Thank you for telling us.")
    assert "call 9 9 9" in step.says[0] and SAMARITANS_SAID in step.says[0]
    assert step.says[1].startswith("To hear that again, press 1.")


@pytest.mark.parametrize("body", ["I want to kill myself", "suicidal", "i want to end my life"])
def test_texted_self_harm_gets_the_emergency_number_and_the_crisis_line_first(client, body):
    text(client, "3")  # in the family menu

    reply = text(client, body)

    assert reply.startswith("Thank you for telling us.")
    assert "call 999" in reply and SAMARITANS_TEXTED in reply
    assert "Reply TALK for a counsellor to call you back" in reply


def test_spanish_self_harm_is_answered_in_spanish_on_both_channels(client):
    call = Call(client)
    call.press("9")
    spoken = call.say("me quiero matar")
    text(client, "ESPAÑOL")
    texted = text(client, "me quiero matar")

    assert spoken.says[0].startswith("Gracias por contárnoslo.")
    assert "llama al 9 9 9" in spoken.says[0] and SAMARITANOS_DICHO in spoken.says[0]
    assert texted.startswith("Gracias por contarnoslo.")  # accents folded for GSM-7
    assert "llama al 999" in texted and SAMARITANOS_ESCRITO in texted


def test_ordinary_questions_still_get_what_they_asked_for(client):
    assert text(client, "my brother overdosed last year").startswith("Helpline:")
    assert text(client, "I'm not suicidal, I just want to stop using").startswith("Sorry")
    step = Call(client).say("how can I prevent an overdose")
    assert not step.says[0].startswith(EMERGENCY_SAID)


def _queued(client: FlaskClient, sender: str) -> None:
    for body in ("TALK", "2", "2", "1", "1", "1"):  # not at risk; no break; this number
        text(client, body, sender=sender)


def test_texted_self_harm_makes_a_waiting_request_urgent(client, redis):
    _queued(client, callback_number(42))
    _queued(client, USABLE_CALLER)

    reply = text(client, "I want to end my life")

    assert reply.startswith("Thank you for telling us.")
    first = _queue(client).active()[0]
    assert first.priority is Priority.URGENT
    assert _queue(client).phone(first.id) == USABLE_CALLER


def test_spoken_self_harm_makes_a_waiting_request_urgent(client, redis):
    Call(client, sender=callback_number(42)).press("4", "2", "2", "1", "1", "1")
    Call(client).press("4", "2", "2", "1", "1", "1")

    Call(client).say("I want to kill myself")

    first = _queue(client).active()[0]
    assert first.priority is Priority.URGENT
    assert _queue(client).phone(first.id) == USABLE_CALLER


def test_self_harm_during_a_call_back_request_keeps_it_and_marks_it_urgent(client, redis):
    call = Call(client)
    call.press("4")  # are you at risk right now?

    step = call.say("I want to kill myself")

    assert step.says[0].startswith("Thank you for telling us.")
    assert step.says[1].startswith("We'll mark your call back as urgent.")
    call.press("1", "1", "1")
    [request] = _queue(client).active()
    assert request.priority is Priority.URGENT
