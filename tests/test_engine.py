"""The flow engine and the SMS step, pure: the shipped flows, no Flask, no Redis, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from helpline.application.config import Settings
from helpline.conversation.engine import Act, Ask, Engine, Event, Hangup, Reply, Say, State, Step
from helpline.conversation.lint import load_flows, sms_text
from helpline.conversation.model import Medium
from helpline.conversation.texting import TextStep, answer_text
from tests.factories import edit

LIBRARY = load_flows(Settings().flows_dir)
VOICE = LIBRARY.engine(Medium.VOICE, "GB")
SMS = LIBRARY.engine(Medium.SMS, "GB")

SILENCE = Reply()
# What the web layer knows about a caller it could call back on the number they used.
CALLER_ID = {"caller_id": "known", "number_end": "1 2 3"}
STORE_IS_DOWN = {"store": "down"}
LONDON = "02079460123"  # Ofcom's drama range, valid to the phone number parser


def reply(engine: Engine, value: str | Reply) -> Reply:
    """A caller's input: on a call, keys for digits and speech for words; else a text."""
    if isinstance(value, Reply):
        return value
    if engine.flow.channel is Medium.VOICE and value.isdigit():
        return Reply(digits=value)
    return Reply(text=value)


def walk(
    engine: Engine,
    *inputs: str | Reply,
    context: Mapping[str, str] | None = None,
    start: State | None = None,
) -> Step:
    """Answer each input in turn, from `start` or the flow's start; return the last step."""
    step = (start, []) if start else engine.start()
    for value in inputs:
        step = engine.resume(step[0], reply(engine, value), context=context or {})
    return step


def at(engine: Engine, node: str, lang: str = "en", **answers: str) -> State:
    return State(flow=engine.flow.id, node=node, lang=lang, answers=answers)


def said(events: list[Event]) -> list[str]:
    return [e.key for e in events if isinstance(e, Say)]


def text_step(body: str, state: State | None = None, opted_out: bool = False) -> TextStep:
    return answer_text(SMS, state, opted_out, Reply(text=body), context={})


# -- starting ------------------------------------------------------------------------------


def test_call_greeting_speaks_the_emergency_number_then_waits_for_the_menu():
    state, events = VOICE.start()

    assert said(events) == [
        "voice.welcome",
        "voice.safety_first",
        "voice.menu",
        "voice.language_offer",
    ]
    assert events[1].text.endswith("hang up now and call 9 9 9.")
    assert isinstance(events[-1], Ask)
    assert events[-1].lang == "en"
    assert state == State(flow="voice", node="main", lang="en")


def test_us_call_greeting_speaks_nine_one_one():
    _, events = LIBRARY.engine(Medium.VOICE, "US").start()

    assert events[1].text.endswith("hang up now and call 9 1 1.")


def test_call_started_in_spanish_speaks_spanish_and_offers_english():
    state, events = VOICE.start("es")

    assert [e.lang for e in events[:3]] == ["es", "es", "es"]
    assert events[0].text.startswith("Hola")
    assert events[3] == Say("voice.language_offer", "For English, press 8.", "en")
    assert events[-1].lang == "es"
    assert state.lang == "es"


def test_texts_start_with_the_menu_and_the_emergency_number():
    state, events = SMS.start()

    assert said(events) == ["sms.menu", "sms.language_offer"]
    assert "In danger? Call 999 now." in events[0].text
    assert state == State(flow="sms", node="main", lang="en")


def test_us_texts_give_911_and_988():
    us = LIBRARY.engine(Medium.SMS, "US")

    _, menu = us.start()
    _, failed = walk(us, "TALK", context=STORE_IS_DOWN)

    assert "Call 911 now." in sms_text(menu, gsm=True)
    assert "999" not in sms_text(menu, gsm=True)
    assert "Call 911 now, or the 988 crisis line" in sms_text(failed, gsm=True)


# -- answering a menu ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said_or_pressed", "node", "key"),
    [
        # Overdose safety asks first about a break from using (tolerance).
        (Reply(digits="1"), "safety", "voice.safety_screen"),
        (Reply(text="safety"), "safety", "voice.safety_screen"),
        (Reply(text="two"), "recovery", "voice.recovery_menu"),
        (Reply(text="I'm worried about my son"), "someone", "voice.someone_menu"),
        (Reply(text="can a counsellor call me back"), "callback_triage", "voice.callback_triage"),
    ],
)
def test_main_menu_takes_a_key_a_topic_or_a_spoken_number(said_or_pressed, node, key):
    state, events = walk(VOICE, said_or_pressed)

    assert said(events) == [key]
    assert isinstance(events[-1], Ask)
    assert state == State(flow="voice", node=node, lang="en")


@pytest.mark.parametrize("choice", [Reply(digits="9"), Reply(text="Español")])
def test_choosing_spanish_on_a_call_greets_again_in_spanish(choice):
    state, events = walk(VOICE, choice)

    assert said(events)[:3] == ["voice.welcome", "voice.safety_first", "voice.menu"]
    assert events[0].lang == "es"
    assert events[1].text.endswith("llama al 9 9 9.")
    assert state == State(flow="voice", node="main", lang="es")


def test_texting_espanol_anywhere_sends_the_spanish_menu():
    state, events = walk(SMS, "ESPAÑOL", start=at(SMS, "safe_alone"))

    assert said(events) == ["sms.menu", "sms.language_offer"]
    assert events[0].lang == "es"
    assert "Llama al 999 ya." in events[0].text
    assert state == State(flow="sms", node="main", lang="es")


# -- not understood ------------------------------------------------------------------------


@pytest.mark.parametrize("miss", [Reply(digits="7"), SILENCE])
def test_an_unknown_key_or_silence_says_sorry_and_asks_again(miss):
    state, events = walk(VOICE, miss)

    assert said(events) == ["voice.reprompt", "voice.menu", "voice.language_offer"]
    assert events[0].text == "Sorry, I didn't catch that."
    assert isinstance(events[-1], Ask)
    assert state == State(flow="voice", node="main", lang="en", reprompts=1)


def test_second_miss_on_a_call_still_asks_again():
    state, events = walk(VOICE, "7", SILENCE)

    assert said(events) == ["voice.reprompt", "voice.menu", "voice.language_offer"]
    assert state.reprompts == 2


def test_third_miss_on_a_call_says_the_safe_goodbye_and_hangs_up():
    state, events = walk(VOICE, "7", SILENCE, "7")

    assert said(events) == ["voice.reprompt", "voice.goodbye"]
    assert "call 9 9 9" in events[1].text
    assert "Samaritans, free, on 1 1 6, 1 2 3" in events[1].text
    assert events[-1] == Hangup()
    assert state == State(flow="voice", node="goodbye", lang="en", ended=True)


def test_texts_not_understood_get_sorry_and_the_menu_counting_misses():
    state, events = walk(SMS, "zzz", "zzz")

    assert said(events) == ["sms.not_understood", "sms.menu", "sms.language_offer"]
    assert state == State(flow="sms", node="main", lang="en", reprompts=2)


def test_third_text_not_understood_gives_the_menu_and_the_count_starts_again():
    state, events = walk(SMS, "zzz", "zzz", "zzz")

    assert said(events) == ["sms.not_understood", "sms.menu", "sms.language_offer"]
    assert state == State(flow="sms", node="main", lang="en", reprompts=0)


# -- misses counted around a question that loops back to itself ----------------------------


@pytest.mark.parametrize(
    ("context", "way_in"),
    [({}, ("4", "2", "2")), (CALLER_ID, ("4", "1", "2", "2"))],
    ids=["caller-id-unknown", "caller-id-declined"],
)
def test_number_entry_gives_up_after_three_misses_with_the_safe_goodbye(context, way_in):
    state, events = walk(VOICE, *way_in, "12", "12", context=context)
    assert said(events) == ["voice.callback_bad_number", "voice.callback_key_number"]
    assert events[-1].collect is True
    assert (state.node, state.reprompts) == ("callback_key_number", 2)

    state, events = walk(VOICE, "12", start=state, context=context)

    assert said(events) == ["voice.reprompt", "voice.goodbye"]
    assert events[-1] == Hangup()
    assert state == State(flow="voice", node="goodbye", lang="en", ended=True)


def test_a_valid_number_after_two_misses_starts_the_count_again():
    state, events = walk(VOICE, "4", "2", "2", "12", "12", LONDON)

    assert said(events) == ["voice.callback_voicemail"]
    assert state == State(
        flow="voice",
        node="callback_voicemail",
        lang="en",
        answers={"urgent": "no", "phone": "+442079460123"},
    )

    state, events = walk(VOICE, "7", "7", "1", start=state)

    assert said(events) == ["voice.callback_texts"]
    assert (state.node, state.reprompts) == ("callback_texts", 0)


def test_triage_text_not_understood_is_asked_again_then_gives_way_to_the_menu():
    state, events = walk(SMS, "TALK", "zzz", "zzz")
    assert said(events) == ["sms.callback_triage"]
    assert (state.node, state.reprompts) == ("callback_triage", 2)

    state, events = walk(SMS, "zzz", start=state)

    assert said(events) == ["sms.not_understood", "sms.menu", "sms.language_offer"]
    assert state == State(flow="sms", node="main", lang="en")


def test_silence_at_a_node_with_no_response_goes_there_and_still_counts(flows: Path):
    edit(
        flows / "voice.yaml",
        "    prompt: [voice.emergency_options]\n",
        "    prompt: [voice.emergency_options]\n    no_response: emergency\n",
    )
    engine = load_flows(flows).engine(Medium.VOICE, "GB")

    state, events = walk(engine, "he's not breathing", SILENCE)
    assert said(events) == ["voice.emergency", "voice.emergency_options"]
    assert (state.node, state.reprompts) == ("emergency", 1)

    state, events = walk(engine, SILENCE, SILENCE, start=state)
    assert said(events) == ["voice.reprompt", "voice.goodbye"]
    assert state.ended is True


@pytest.mark.parametrize(("lang", "word"), [("en", "overdose"), ("es", "sobredosis")])
def test_saying_the_overdose_topic_opens_it_after_the_emergency_advice(lang, word):
    state, events = VOICE.resume(VOICE.start(lang)[0], Reply(text=word))

    assert said(events) == ["voice.emergency", "voice.safety_screen"]  # a break first
    assert "9 9 9" in events[0].text
    assert state == State(flow="voice", node="safety", lang=lang)


# -- a person in danger comes first --------------------------------------------------------


def test_crisis_speech_on_the_main_menu_gives_the_emergency_advice():
    state, events = walk(VOICE, "I think he's not breathing")

    assert said(events) == ["voice.emergency", "voice.emergency_options"]
    assert events[0].text.startswith(
        "If someone has overdosed, is not breathing, or will not wake up, call 9 9 9"
    )
    assert events[0].text.endswith("Hang up now and call 9 9 9.")
    assert state == State(flow="voice", node="emergency", lang="en")


def test_crisis_text_on_the_main_menu_gets_the_crisis_reply():
    state, events = walk(SMS, "my friend took an overdose")

    assert said(events) == ["sms.crisis", "sms.crisis_options"]
    assert "call 999 NOW" in events[0].text
    assert state == State(flow="sms", node="crisis", lang="en")


@pytest.mark.parametrize(
    ("engine", "words", "emergency", "question"),
    [
        (VOICE, "she's not breathing", "voice.emergency", "voice.callback_voicemail"),
        (SMS, "he overdosed", "sms.crisis", "sms.callback_voicemail"),
    ],
    ids=["voice", "sms"],
)
def test_crisis_mid_request_gives_the_emergency_advice_then_the_same_question_marked_urgent(
    engine, words, emergency, question
):
    asked = at(engine, "callback_voicemail", urgent="no", phone="caller")

    state, events = walk(engine, words, start=asked, context=CALLER_ID)

    assert said(events) == [emergency, question]
    assert isinstance(events[-1], Ask)
    assert state == State(
        flow=engine.flow.id,
        node="callback_voicemail",
        lang="en",
        answers={"urgent": "yes", "phone": "caller"},
    )


@pytest.mark.parametrize(
    ("engine", "way_in", "expected"),
    [
        (VOICE, "4", ["voice.emergency", "voice.callback_urgent", "voice.callback_key_number"]),
        (SMS, "TALK", ["sms.crisis", "sms.callback_key_number"]),
    ],
    ids=["voice", "sms"],
)
def test_crisis_at_triage_marks_the_request_urgent_and_moves_on_to_the_number(
    engine, way_in, expected
):
    state, events = walk(engine, way_in, "he collapsed")

    assert said(events) == expected
    assert state.node == "callback_key_number"
    assert state.answers == {"urgent": "yes"}


def test_at_risk_caller_hears_the_emergency_number_and_crisis_line_before_anything_else():
    state, events = walk(VOICE, "4", "1")

    assert said(events) == [
        "voice.callback_at_risk",
        "voice.callback_urgent",
        "voice.callback_break",
    ]
    assert "Samaritans, free, on 1 1 6, 1 2 3" in events[0].text
    assert events[0].text.endswith("hang up now and call 9 9 9.")
    assert state.answers == {"urgent": "yes"}


def test_at_risk_texter_reads_the_emergency_number_and_crisis_line_in_the_same_reply():
    state, events = walk(SMS, "TALK", "1")

    assert said(events) == ["sms.callback_at_risk", "sms.callback_break"]
    assert "call 999 or Samaritans, free, on 116 123 now" in sms_text(events, gsm=True)
    assert state.answers == {"urgent": "yes"}


@pytest.mark.parametrize(
    ("engine", "way_in", "advice"),
    [(VOICE, "4", "voice.safety_break"), (SMS, "TALK", "sms.safe_break")],
    ids=["voice", "sms"],
)
def test_a_break_from_using_leads_the_call_back_with_the_after_a_break_advice(
    engine, way_in, advice
):
    state, events = walk(engine, way_in, "2", "yes")

    assert said(events)[0] == advice
    assert "much less" in events[0].text
    assert state.node == "callback_key_number"


def test_a_texter_doing_ok_at_triage_is_not_read_as_an_overdose():
    state, events = walk(SMS, "no, I'm doing ok", start=at(SMS, "callback_triage"))

    assert said(events) == ["sms.callback_break"]
    assert state.answers == {"urgent": "no"}


@pytest.mark.parametrize("body", ["what are you doing?", "that's odd"])
def test_everyday_words_are_not_read_as_a_crisis(body):
    assert said(text_step(body).events) == ["sms.menu", "sms.language_offer"]


# -- the store is down: nothing can be queued or remembered --------------------------------


def test_call_back_request_with_the_store_down_says_plainly_it_was_not_taken():
    state, events = walk(VOICE, "4", context=STORE_IS_DOWN)

    assert said(events) == ["voice.callback_failed", "voice.callback_failed_options"]
    assert "you are not on the list yet" in events[0].text
    assert "call 9 9 9" in events[0].text
    assert "Samaritans, free, on 1 1 6, 1 2 3" in events[0].text
    assert state == State(flow="voice", node="callback_failed", lang="en")


def test_texted_call_back_request_with_the_store_down_is_not_taken_and_keeps_nothing():
    state, events = walk(SMS, "TALK", context=STORE_IS_DOWN)

    assert said(events) == ["sms.callback_failed", "sms.stateless_options"]
    assert "Call 999 now, or Samaritans, free, on 116 123." in sms_text(events, gsm=True)
    assert state == State(flow="sms", node="main", lang="en")


@pytest.mark.parametrize("body", ["SAFE", "2", "HELP", "FAMILY", "overdose"])
def test_with_the_store_down_every_reply_ends_by_pointing_at_the_menu(body):
    state, events = walk(SMS, body, context=STORE_IS_DOWN)

    assert said(events)[-1] == "sms.stateless_options"
    assert events[-2].text.startswith("Text MENU")
    assert events[-1] == Ask(lang="en", hints=(), max_digits=1)
    assert state == State(flow="sms", node="main", lang="en")


def test_an_answer_mid_request_with_the_store_down_drops_the_answers():
    asked = at(SMS, "callback_voicemail", urgent="no", phone="+442079460123")

    state, events = walk(SMS, "1", start=asked, context=STORE_IS_DOWN)

    assert said(events) == ["sms.stateless_options"]
    assert state == State(flow="sms", node="main", lang="en")


def test_the_main_menu_is_the_same_with_the_store_down():
    down = walk(SMS, "MENU", context=STORE_IS_DOWN)

    assert said(down[1]) == ["sms.menu", "sms.language_offer"]
    assert down == walk(SMS, "MENU")


# -- the caller's own number ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "way_in", "offer"),
    [(VOICE, "4", "voice.callback_confirm_number"), (SMS, "TALK", "sms.callback_number")],
    ids=["voice", "sms"],
)
def test_a_known_caller_id_is_offered_as_the_number_to_call(engine, way_in, offer):
    state, events = walk(engine, way_in, "2", "2", context=CALLER_ID)

    assert said(events) == [offer]
    assert state == State(
        flow=engine.flow.id, node="callback_confirm_number", lang="en", answers={"urgent": "no"}
    )


def test_the_number_offered_on_a_call_is_read_by_its_last_digits():
    _, events = walk(VOICE, "4", "2", "2", context=CALLER_ID)

    assert "ending in 1 2 3." in events[0].text


@pytest.mark.parametrize(("engine", "way_in"), [(VOICE, "4"), (SMS, "TALK")], ids=["voice", "sms"])
def test_without_a_caller_id_the_request_asks_for_a_number(engine, way_in):
    state, events = walk(engine, way_in, "2", "2")

    assert said(events) == [f"{engine.flow.id}.callback_key_number"]
    assert events[-1].collect is True
    assert state == State(
        flow=engine.flow.id, node="callback_key_number", lang="en", answers={"urgent": "no"}
    )


# -- the call back itself ------------------------------------------------------------------


@pytest.mark.parametrize(("engine", "way_in"), [(VOICE, "4"), (SMS, "TALK")], ids=["voice", "sms"])
def test_the_last_answer_of_a_request_asks_the_web_layer_to_queue_it(engine, way_in):
    state, events = walk(engine, way_in, "2", "2", "1", "1", "2", context=CALLER_ID)

    assert events == [Act("callback")]
    assert state.node == "callback_queue"
    assert state.answers == {"urgent": "no", "phone": "caller", "voicemail": "yes", "texts": "no"}


def test_a_queued_request_is_told_its_place_and_its_answers_are_dropped():
    queueing, _ = walk(VOICE, "4", "2", "2", "1", "1", "1", context=CALLER_ID)

    state, events = VOICE.outcome(queueing, "queued", {"place": "known", "position": "3"})

    assert said(events) == [
        "voice.callback_queued",
        "voice.callback_position",
        "voice.callback_wait_unknown",
        "voice.callback_done",
    ]
    assert events[1].text == "You are number 3 in the queue."
    assert state == State(flow="voice", node="callback_done", lang="en")


def test_a_request_that_could_not_be_queued_says_so_and_drops_its_answers():
    queueing, _ = walk(SMS, "TALK", "1", "2", LONDON, "2", "2")

    state, events = SMS.outcome(queueing, "failed", {})

    assert said(events) == ["sms.callback_failed", "sms.callback_failed_options"]
    assert "so you're not on the list" in events[0].text
    assert state == State(flow="sms", node="callback_failed", lang="en")


@pytest.mark.parametrize(
    ("engine", "node", "answer", "words"),
    [
        (VOICE, "callback_voicemail", "voicemail", "no please don't"),
        (VOICE, "callback_voicemail", "voicemail", "no, por favor"),
        (SMS, "callback_texts", "texts", "no please don't"),
    ],
    ids=["voice", "voice-spanish", "sms"],
)
def test_no_please_dont_is_taken_as_no(engine, node, answer, words):
    # "please" is a yes-word too: a refusal must never be read as consent to a voicemail.
    state, _ = walk(engine, words, start=at(engine, node, urgent="no"))

    assert state.answers[answer] == "no"


# -- restoring a kept conversation ---------------------------------------------------------

KEPT = State(
    flow="sms",
    node="callback_voicemail",
    lang="es",
    reprompts=2,
    answers={"urgent": "yes", "phone": "+442079460123"},
)


def test_restore_round_trips_a_kept_state():
    assert SMS.restore(KEPT.to_dict()) == KEPT


@pytest.mark.parametrize(
    "change",
    [
        {"flow": "voice"},
        {"node": "nowhere"},
        {"lang": "fr"},
        {"reprompts": 3},
        {"reprompts": -1},
        {"reprompts": "two"},
        {"answers": {f"k{n}": "v" for n in range(9)}},
        {"answers": {"place": "x" * 201}},
        {"answers": {"x" * 33: "yes"}},
        {"answers": {"urgent": 1}},
        {"answers": ["urgent", "yes"]},
    ],
)
def test_restore_refuses_what_does_not_fit_the_flow(change):
    assert SMS.restore({**KEPT.to_dict(), **change}) is None


# -- one text, opt-out words first ---------------------------------------------------------


@pytest.mark.parametrize("body", ["STOP", "unsubscribe", " Stop. "])
def test_stop_sends_nothing_and_forgets_the_conversation(body):
    assert text_step(body, at(SMS, "callback_voicemail", urgent="no")) == TextStep(None, [], True)


def test_an_ordinary_text_while_opted_out_gets_no_reply():
    # Opting out forgets the conversation: only a crisis starts one again.
    assert text_step("SAFE", None, opted_out=True) == TextStep(None, [], True)


def test_a_crisis_text_while_opted_out_still_gets_the_emergency_reply():
    step = text_step("he's not breathing", None, opted_out=True)

    assert said(step.events) == ["sms.crisis", "sms.crisis_options"]
    assert "call 999 NOW" in step.events[0].text
    assert step.opted_out is True


@pytest.mark.parametrize("body", ["START", "yes"])
def test_start_or_yes_while_opted_out_welcomes_back_with_the_menu(body):
    step = text_step(body, at(SMS, "safe", lang="es"), opted_out=True)

    assert said(step.events) == ["sms.resubscribed", "sms.menu", "sms.language_offer"]
    assert step.events[0].lang == "es"
    assert step.opted_out is False
    assert step.state == State(flow="sms", node="main", lang="es")


def test_the_first_text_not_understood_gets_the_menu_without_an_apology():
    first = text_step("zzz")
    later = text_step("zzz", at(SMS, "main"))

    assert said(first.events) == ["sms.menu", "sms.language_offer"]
    assert first.state == State(flow="sms", node="main", lang="en")
    assert said(later.events) == ["sms.not_understood", "sms.menu", "sms.language_offer"]


def test_a_text_after_an_ended_conversation_is_read_at_the_main_menu():
    ended = State(flow="sms", node="callback_done", lang="en", ended=True)

    step = text_step("2", ended)

    assert said(step.events) == ["sms.recovery", "sms.recovery_options"]
    assert step.state == State(flow="sms", node="recovery", lang="en")


def test_the_option_an_emergency_reply_offers_an_opted_out_texter_is_answered():
    crisis = text_step("he's not breathing", None, opted_out=True)
    assert "Reply 1 Signs of overdose" in crisis.events[1].text

    step = text_step("1", crisis.state, opted_out=True)

    assert said(step.events)[:1] == ["sms.safe_signs"]
