from __future__ import annotations

import pytest

from helpline.flows.matching import (
    as_choice,
    contains_phrase,
    edit_distance_at_most_one,
    is_keyword,
    tokens,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Safe!! ", ("SAFE",)),
        ("ESPAÑOL", ("ESPANOL",)),
        ("won't wake up", ("WONT", "WAKE", "UP")),
        ("\u200fsafe\u200e", ("SAFE",)),
        ("ｓａｆｅ", ("SAFE",)),
    ],
)
def test_tokens_fold_case_accents_punctuation_and_width(text, expected):
    assert tokens(text) == expected


@pytest.mark.parametrize(
    ("a", "b"), [("SAFE", "SAEF"), ("SAFE", "SAFEE"), ("SAFE", "SAF"), ("MENU", "MENY")]
)
def test_one_slip_is_forgiven(a, b):
    assert edit_distance_at_most_one(a, b)


@pytest.mark.parametrize(("a", "b"), [("SAFE", "FASE"), ("SAFE", "SA"), ("TALK", "TAKEN")])
def test_two_slips_are_not(a, b):
    assert not edit_distance_at_most_one(a, b)


def test_short_words_must_be_exact_even_when_fuzzy():
    assert not contains_phrase(tokens("ok thanks"), [("OD",)], fuzzy=True)
    assert contains_phrase(tokens("i think he OD"), [("OD",)], fuzzy=True)


def test_keyword_is_the_whole_message_give_or_take_a_word():
    assert is_keyword(tokens("safe please"), [("SAFE",)])
    assert not is_keyword(tokens("is it safe to use tonight"), [("SAFE",)])


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("2", "2"),
        (" 2. ", "2"),
        ("two", "2"),
        ("Uno", "1"),
        ("*", "*"),
        ("22 b", None),
        ("hello", None),
    ],
)
def test_short_replies_are_read_as_menu_choices(text, choice):
    assert as_choice(text) == choice
