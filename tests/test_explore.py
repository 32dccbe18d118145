"""The conversation explorer: the shipped flows prove every invariant, and each kind of
unsafe flow is caught, with the shortest inputs that reach it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpline.application.config import Settings
from helpline.conversation import twiml
from helpline.conversation.explore import Report, Store, explore
from helpline.conversation.lint import load_flows
from tests.factories import edit, run_helpline

AT_RISK_WITH_ADVICE = "    say: [voice.callback_at_risk, voice.callback_urgent]"
AT_RISK_WITHOUT_ADVICE = "    say: [voice.callback_urgent]"
VOICE_STORE_CHECK = "    branch: {fact: store, down: callback_failed, otherwise: callback_open}"


def _explore(flows: Path, render: twiml.Render | None = twiml.reply) -> Report:
    library = load_flows(flows)
    return explore(library, [library.regions["GB"]], render)


def _found(report: Report, invariant: int) -> list[str]:
    return [str(p) for p in report.problems if p.invariant == invariant]


def test_shipped_flows_prove_every_invariant_in_every_region_and_store_condition():
    library = load_flows(Settings().flows_dir)
    report = explore(library, library.regions.values(), twiml.reply)

    assert [str(p) for p in report.problems] == []
    # Both flows, both languages, caller ID usable or not, opted out or not: thousands.
    assert report.states > 2000 and report.transitions > 30_000


def test_flows_check_exits_non_zero_and_prints_the_path_to_a_problem(flows):
    # The triage 'yes' no longer gives the emergency advice.
    edit(flows / "voice.yaml", AT_RISK_WITH_ADVICE, AT_RISK_WITHOUT_ADVICE)
    done = run_helpline("flows", "check", "--dir", str(flows))

    assert done.returncode == 1
    assert "invariant 3: an at-risk answer at 'callback_triage'" in done.stdout
    assert "voice flow, region GB, store normal: presses 4 -> presses 1" in done.stdout


# -- each invariant, broken on purpose ---------------------------------------------------


def test_1_a_reply_that_cannot_be_rendered_is_found():
    def broken(region, channel, events, gsm):  # type: ignore[no-untyped-def]
        return "<Response><Say>unclosed</Response>"

    report = _explore(Settings().flows_dir, broken)

    assert any("does not render as TwiML" in p for p in _found(report, 1))


def test_1_an_sms_reply_over_two_segments_is_found_even_where_the_lint_cannot_see_it(flows):
    # On its own the question fits; after the emergency advice (a crisis phrase mid-
    # request) it does not, and only walking the states finds that reply.
    long_question = "If we miss you, can we leave a voicemail? " * 3 + "Reply 1 Yes, 2 No."
    edit(
        flows / "content" / "en.yaml",
        "    If we miss you, can we leave a voicemail? Reply 1 Yes, 2 No. 0 Menu.",
        f"    {long_question} 0 Menu.",
    )

    found = _found(_explore(flows), 1)

    assert any("an SMS reply takes 3 segments" in p for p in found), found


def test_2_a_crisis_phrase_not_answered_with_the_emergency_advice_is_found(flows):
    # The crisis node now opens with advice that never says the emergency number.
    edit(
        flows / "voice.yaml",
        "  emergency:\n    say: [voice.emergency]",
        "  emergency:\n    say: [voice.safety_alone]",
    )

    found = _found(_explore(flows), 2)

    assert any(
        "a crisis phrase at 'main' is not answered first" in p and "says 'overdosing'" in p
        for p in found
    ), found


def test_3_an_at_risk_answer_without_the_emergency_number_is_found(flows):
    edit(flows / "voice.yaml", AT_RISK_WITH_ADVICE, AT_RISK_WITHOUT_ADVICE)

    found = _found(_explore(flows), 3)

    assert found == [
        "invariant 3: an at-risk answer at 'callback_triage' hears no emergency number\n"
        "    voice flow, region GB, store normal: presses 4 -> presses 1"
    ]


def test_4_a_question_asked_for_ever_is_found(flows):
    # Without somewhere to give up to, the triage question loops on every miss.
    edit(flows / "sms.yaml", "exhausted: main             #", "#")

    found = _found(_explore(flows), 4)

    assert any(
        "repeating texts 'zzq wibble' at 'callback_triage' never ends" in p
        and "texts '4' -> texts 'zzq wibble' -> texts 'zzq wibble' -> texts 'zzq wibble'" in p
        for p in found
    ), found


def test_4_a_question_without_the_way_back_to_the_menu_is_found(flows):
    edit(
        flows / "voice.yaml",
        '      - {digits: "*", words: nav_menu, goto: main}\n    other: callback_bad_number',
        '      - {digits: "#", goto: main}\n    other: callback_bad_number',
    )

    found = _found(_explore(flows), 4)

    assert any(
        "presses * at 'callback_key_number' does not reach the main menu" in p for p in found
    )


def test_5_a_call_back_question_with_the_store_down_is_found(flows):
    edit(
        flows / "sms.yaml",
        "    branch: {fact: store, down: callback_failed, otherwise: callback_open}",
        "    next: callback_open",
    )

    report = _explore(flows)
    found = _found(report, 5)

    assert any("with the store down, a call back is asked for at 'main'" not in p for p in found)
    assert any(
        "a call back request is not answered with the emergency number and another line" in p
        for p in found
    ), found
    assert {p.store for p in report.problems if p.invariant == 5} == {Store.DEGRADED}


def test_5_being_told_queued_with_the_store_down_is_found(flows):
    # The store check turned around, and a failure that claims success.
    turned = "    branch: {fact: store, down: callback_open, otherwise: callback_failed}"
    edit(flows / "voice.yaml", VOICE_STORE_CHECK, turned)
    edit(flows / "voice.yaml", "      failed: callback_failed\n", "      failed: callback_queued\n")

    found = _found(_explore(flows), 5)

    assert any("a caller is told they are on the list" in p for p in found), found
    assert any("a call back is asked for at 'callback_triage'" in p for p in found), found


def test_6_is_proved_for_someone_asking_again_with_a_request_open(flows):
    # Reached only by a texter whose request is open already, when it cannot be checked.
    edit(
        flows / "content" / "en.yaml",
        "on our list. In danger? Call {emergency} now, or {crisis_line}.",
        "on our list.",
    )

    found = _found(_explore(flows), 6)

    assert any("you're still on our list." in p and "texts '4'" in p for p in found), found


def test_6_an_sms_menu_without_the_emergency_number_is_found(flows):
    edit(
        flows / "content" / "en.yaml",
        "    6 Talk to a counsellor, 0 Menu. In danger? Call {emergency}.",
        "    6 Talk to a counsellor, 0 Menu.",
    )

    found = _found(_explore(flows), 6)

    assert any("an SMS menu does not name the emergency number" in p for p in found), found


def test_6_a_goodbye_without_the_emergency_number_is_found(flows):
    edit(
        flows / "content" / "en.yaml",
        "We'll end the call here. Before you go: if someone is in danger, call {emergency}.",
        "We'll end the call here.",
    )

    found = _found(_explore(flows), 6)

    assert any("a goodbye does not say the emergency number" in p for p in found), found


@pytest.mark.parametrize("region", ["GB", "US"])
def test_the_explorer_reads_the_emergency_number_of_each_region(flows, region):
    # 911 appears nowhere in a GB deployment: a reply that hard-codes it is not enough.
    edit(
        flows / "content" / "en.yaml",
        "    6 Talk to a counsellor, 0 Menu. In danger? Call {emergency}.",
        "    6 Talk to a counsellor, 0 Menu. In danger? Call 911.",
    )

    library = load_flows(flows)
    report = explore(library, [library.regions[region]], None)

    assert bool(_found(report, 6)) is (region == "GB")
