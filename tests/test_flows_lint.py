"""The linter is the loader: each kind of broken flow is reported, by name, with a fix."""

from __future__ import annotations

import os

import pytest

from helpline.application.config import Settings
from helpline.conversation.gsm import fold_to_gsm, segments
from helpline.conversation.lint import check_flows, load_flows
from helpline.infrastructure.errors import FlowError
from tests.factories import edit, run_helpline

FLOWS = Settings().flows_dir


def test_shipped_flows_have_no_problems():
    assert check_flows(FLOWS) == []


def test_dangling_exit_is_reported(flows):
    edit(flows / "voice.yaml", "goto: safety_break}", "goto: safety_brake}")
    assert any("'safety_brake', which is not a node" in p for p in check_flows(flows))


def test_duplicate_node_id_is_reported(flows):
    edit(
        flows / "sms.yaml", "  info:\n", "  family:\n    say: [sms.info]\n    end: true\n  info:\n"
    )
    assert any("duplicate key 'family'" in p for p in check_flows(flows))


def test_a_yaml_syntax_error_is_one_problem_with_its_file_and_line(flows):
    edit(flows / "content" / "en.yaml", '    "1": [one]\n', '    "1": [one\n')
    problems = check_flows(flows)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert problem.startswith("content/en.yaml, line ")
    assert "not valid YAML: expected ',' or ']'" in problem
    assert "started on line " in problem

    result = run_helpline("flows", "check", "--dir", str(flows))
    assert result.returncode == 1
    assert result.stdout.count("not valid YAML") == 1 and "missing" not in result.stdout


def test_flows_check_reads_the_deployments_flows_dir(flows):
    edit(flows / "content" / "en.yaml", '    "1": [one]\n', '    "1": [one\n')
    result = run_helpline("flows", "check", env={**os.environ, "HELPLINE_FLOWS_DIR": str(flows)})
    assert result.returncode == 1 and "content/en.yaml, line" in result.stdout


def test_missing_translation_is_reported(flows):
    edit(flows / "content" / "es.yaml", "  sms.not_understood:", "  sms.not_understood_typo:")
    problems = check_flows(flows)
    assert "content/es.yaml: message 'sms.not_understood' is missing (translation)" in problems


@pytest.mark.parametrize("part", ["name", "digit", "words", "numbers"])
def test_a_language_lacking_any_part_of_its_block_is_refused(flows, part):
    path = flows / "content" / "es.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {part}:"))
    end = start + 1
    while lines[end].startswith("    "):  # the block's own lines (the number words)
        end += 1
    path.write_text("".join(lines[:start] + lines[end:]), encoding="utf-8")

    assert f"content/es.yaml: language.{part} is missing" in check_flows(flows)


def test_a_language_lacking_the_words_for_one_key_is_refused(flows):
    edit(flows / "content" / "es.yaml", '    "5": [cinco]\n', "")
    assert "content/es.yaml: language.numbers '5' is missing" in check_flows(flows)


def test_a_number_word_that_means_another_key_elsewhere_is_refused(flows):
    edit(flows / "content" / "es.yaml", '"2": [dos]', '"2": [dos, four]')
    assert (
        "content/es.yaml: language.numbers word 'FOUR' is '2' here but '4' in en.yaml"
        in check_flows(flows)
    )


def test_unreachable_node_is_reported(flows):
    edit(
        flows / "voice.yaml",
        "  goodbye:\n",
        "  orphan:\n    say: [voice.goodbye]\n    end: true\n\n  goodbye:\n",
    )
    assert "voice.yaml: node 'orphan' is unreachable" in check_flows(flows)


def test_sms_over_two_segments_is_reported(flows):
    edit(
        flows / "content" / "en.yaml",
        "sms.crisis_options: Reply 1",
        "sms.crisis_options: " + "Reply well " * 20 + "1",
    )
    problems = check_flows(flows)
    assert any("arriving at" in p and "'crisis'" in p and "3 SMS segments" in p for p in problems)


def test_sms_over_two_segments_on_one_branch_only_is_reported(flows):
    # Said only out of hours: the size check must follow every branch, not just one.
    edit(
        flows / "content" / "en.yaml",
        "sms.callback_closed: >-",
        "sms.callback_closed: >-\n    " + "Sorry for the wait. " * 8,
    )
    problems = check_flows(flows)
    assert any("'callback_queued'" in p and "SMS segments" in p for p in problems)


def test_a_workers_text_over_two_segments_is_reported(flows):
    edit(
        flows / "content" / "es.yaml",
        "sms.missed_call: >-",
        "sms.missed_call: >-\n    " + "Lo sentimos mucho. " * 14,
    )
    assert any("es: sms.missed_call" in p and "SMS segments" in p for p in check_flows(flows))


def test_an_action_without_all_its_outcomes_is_reported(flows):
    edit(
        flows / "sms.yaml",
        "      failed: callback_failed\n",
        "",
    )
    assert any("action 'callback' needs outcomes" in p for p in check_flows(flows))


def test_a_branch_without_otherwise_is_reported(flows):
    edit(
        flows / "voice.yaml",
        "branch: {fact: hours, closed: callback_closed, otherwise: callback_wait}",
        "branch: {fact: hours, closed: callback_closed}",
    )
    assert any("'branch' needs 'fact' and 'otherwise'" in p for p in check_flows(flows))


def test_character_that_forces_ucs2_is_reported(flows):
    edit(
        flows / "content" / "en.yaml",
        "sms.not_understood: Sorry,",
        "sms.not_understood: Sorry \u2764,",
    )
    assert any("would force UCS-2" in p for p in check_flows(flows))


def test_unknown_placeholder_is_reported(flows):
    edit(flows / "content" / "en.yaml", "call {emergency} NOW", "call {emergancy} NOW")
    assert any("unknown {emergancy}" in p for p in check_flows(flows))


def test_waiting_node_without_cases_is_reported(flows):
    edit(
        flows / "sms.yaml",
        '    prompt: [sms.back_to_menu]\n    cases:\n      - {digits: "0", goto: main}\n',
        "    prompt: [sms.back_to_menu]\n",
    )
    assert any(
        "'info' waits for input, so it needs 'prompt' and 'cases'" in p for p in check_flows(flows)
    )


def test_load_refuses_broken_flows_listing_every_problem(flows):
    edit(flows / "voice.yaml", "goto: safety_break}", "goto: nowhere}")
    edit(flows / "content" / "es.yaml", "  sms.not_understood:", "  sms.misunderstood:")
    with pytest.raises(FlowError) as caught:
        load_flows(flows)
    assert len(caught.value.problems) >= 3


def test_flows_check_command_exits_non_zero_and_names_the_problem(flows):
    edit(flows / "voice.yaml", "goto: safety_break}", "goto: nowhere}")
    result = run_helpline("flows", "check", "--dir", str(flows))
    assert result.returncode == 1
    assert "'nowhere', which is not a node" in result.stdout


def test_flows_check_command_passes_on_shipped_flows():
    result = run_helpline("flows", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flows OK" in result.stdout
    # Then the explorer's count of what it proved safe.
    last = result.stdout.splitlines()[-1]
    assert last.startswith("explored ") and ", 0 problems in " in last


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("á" * 70, 1),
        ("á" * 71, 2),
        ("ñ" * 160, 1),
    ],
)
def test_segment_counts_follow_gsm7_and_ucs2_rules(text, expected):
    assert segments(text) == expected


def test_spanish_accents_fold_to_gsm7_but_keep_letters_gsm7_has():
    assert (
        fold_to_gsm("Recuperación, señales, ¿Peligro? “sí”")
        == 'Recuperacion, señales, ¿Peligro? "si"'
    )


def test_an_unknown_action_is_reported_with_the_actions_there_are(flows):
    edit(flows / "voice.yaml", "    action: callback\n", "    action: check_in\n")
    assert (
        "voice.yaml: node 'callback_queue': unknown action 'check_in'"
        " (the actions are: callback, callback_again, callback_urgent, checkin, checkin_where)"
        in check_flows(flows)
    )


def test_an_outcome_the_flow_does_not_route_is_named(flows):
    edit(
        flows / "voice.yaml",
        "      failed: callback_failed\n",
        "      busy: callback_failed\n",
    )
    problems = check_flows(flows)
    assert any(
        p.startswith("voice.yaml: node 'callback_queue': action 'callback' needs outcomes")
        and "'failed' is not routed" in p
        and "'busy' is never returned" in p
        for p in problems
    )


def test_a_fact_the_action_does_not_provide_is_reported_where_it_is_said(flows):
    # A failed request has no place in the queue: the caller would hear "{position}".
    edit(
        flows / "content" / "en.yaml",
        "so you are not on the list yet.",
        "so you are not number {position} on the list yet.",
    )
    assert (
        "voice.yaml: node 'callback_failed' says 'voice.callback_failed', which uses"
        " {position}: nothing provides it there after action 'callback' ends 'failed'"
        in check_flows(flows)
    )


def test_a_fact_said_before_any_action_is_reported(flows):
    edit(
        flows / "content" / "en.yaml",
        "If we miss you, can we leave a voicemail?",
        "If we miss you (number {position}), can we leave a voicemail?",
    )
    assert any(
        p.startswith("sms.yaml: node 'callback_voicemail' says 'sms.callback_voicemail'")
        and "{position}" in p
        for p in check_flows(flows)
    )


def test_an_answer_the_action_needs_but_no_node_records_is_reported(flows):
    # Without it every request would be taken as "no texts", whatever the texter said.
    edit(flows / "sms.yaml", 'set: {texts: "yes"}', 'set: {text: "yes"}')
    edit(flows / "sms.yaml", 'set: {texts: "no"}', 'set: {text: "no"}')
    assert "sms.yaml: action 'callback' needs answer 'texts'; no node records it" in check_flows(
        flows
    )


def test_a_node_id_that_would_need_quoting_in_a_url_is_refused(flows):
    edit(flows / "voice.yaml", "  goodbye:\n", "  good bye:\n")
    assert any("node id 'good bye' must be lower-case letters" in p for p in check_flows(flows))
