from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpline.flows.matching import (
    PhraseIndex,
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


# Few letters, so that words one slip apart (and two slips apart) come up often.
_WORDS = st.text(alphabet="ABOD", min_size=1, max_size=7)
_PHRASES = st.lists(st.lists(_WORDS, min_size=1, max_size=3).map(tuple), max_size=8)


def _slip(data: st.DataObject, word: str) -> str:
    """Return word as typed, with up to two slips of the thumb."""
    for _ in range(data.draw(st.integers(0, 2))):
        i = data.draw(st.integers(0, len(word)))
        letter = data.draw(st.sampled_from("ABOD"))
        kind = data.draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
        if kind == "insert":
            word = word[:i] + letter + word[i:]
        elif kind == "delete" and len(word) > 1:
            word = word[: max(i - 1, 0)] + word[max(i, 1) :]
        elif kind == "replace" and i < len(word):
            word = word[:i] + letter + word[i + 1 :]
        elif kind == "swap" and i + 1 < len(word):
            word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word


@settings(max_examples=500, deadline=None)
@given(phrases=_PHRASES, fuzzy=st.booleans(), data=st.data())
def test_the_phrase_index_finds_exactly_what_trying_every_phrase_finds(phrases, fuzzy, data):
    # Messages mix random words with phrase words typed with a slip or two.
    phrase_words = [w for phrase in phrases for w in phrase]
    words: list[str] = []
    for _ in range(data.draw(st.integers(0, 10))):
        if phrase_words and data.draw(st.booleans()):
            words.append(_slip(data, data.draw(st.sampled_from(phrase_words))))
        else:
            words.append(data.draw(_WORDS))

    index = PhraseIndex(phrases, fuzzy=fuzzy)

    assert index.contains(words) == contains_phrase(words, phrases, fuzzy=fuzzy)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("he has OVERDOSED i think", True),
        ("she took an ovredose", True),  # a swap
        ("overdoes", True),  # a swap at the end
        ("he is not breatheing", True),  # an extra letter in the second word
        ("lips are bleu", False),  # "BLUE" is too short to forgive
        ("i need a dose of hope", False),
        ("", False),
    ],
)
def test_the_crisis_index_forgives_one_slip_in_long_words_only(text, found):
    phrases = [("OVERDOSE",), ("OVERDOSED",), ("NOT", "BREATHING"), ("LIPS", "ARE", "BLUE")]
    assert PhraseIndex(phrases, fuzzy=True).contains(tokens(text)) is found


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
