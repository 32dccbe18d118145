from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpline.application.config import Settings
from helpline.conversation.engine import Reply
from helpline.conversation.lint import load_flows
from helpline.conversation.matching import (
    KeywordIndex,
    PhraseIndex,
    as_choice,
    contains_phrase,
    edit_distance_at_most_one,
    first_phrase,
    is_keyword,
    tokens,
)
from helpline.conversation.model import Medium
from helpline.infrastructure.constants import CRISIS_TYPO_FROM


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


def _message(data, phrases, longest: int = 4):  # type: ignore[no-untyped-def]
    """Random words mixed with phrase words typed with a slip or two."""
    phrase_words = [w for phrase in phrases for w in phrase]
    words: list[str] = []
    for _ in range(data.draw(st.integers(0, longest))):
        if phrase_words and data.draw(st.booleans()):
            words.append(_slip(data, data.draw(st.sampled_from(phrase_words))))
        else:
            words.append(data.draw(_WORDS))
    return words


@settings(max_examples=500, deadline=None)
@given(phrases=_PHRASES, fuzzy=st.booleans(), data=st.data())
def test_the_phrase_index_finds_exactly_what_trying_every_phrase_finds(phrases, fuzzy, data):
    words = _message(data, phrases, longest=10)
    index = PhraseIndex(phrases, fuzzy=fuzzy)

    assert index.contains(words) == contains_phrase(words, phrases, fuzzy=fuzzy)


@settings(max_examples=500, deadline=None)
@given(keywords=st.lists(_PHRASES, min_size=1, max_size=4), fuzzy=st.booleans(), data=st.data())
def test_the_keyword_index_finds_the_keyword_trying_each_in_order_finds(keywords, fuzzy, data):
    words = _message(data, [p for phrases in keywords for p in phrases])
    expected = next(
        (n for n, phrases in enumerate(keywords) if is_keyword(words, phrases, fuzzy=fuzzy)), None
    )

    assert KeywordIndex(keywords).find(words, fuzzy=fuzzy) == expected


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
    numbers = load_flows(Settings().flows_dir).content.number_words()

    assert as_choice(text, numbers) == choice


def test_the_phrase_that_comes_first_wins_and_then_the_longer_one():
    yes, no = [("YES",), ("PLEASE",), ("I", "AM")], [("NO",), ("I", "AM", "NOT")]

    def answer(text: str) -> str:
        found = {"yes": first_phrase(tokens(text), yes), "no": first_phrase(tokens(text), no)}
        return min((where, name) for name, where in found.items() if where is not None)[1]

    assert answer("no, please don't") == "no"
    assert answer("yes please") == "yes"
    assert answer("I am not at risk") == "no"
    assert answer("I am") == "yes"
    assert first_phrase(tokens("maybe later"), yes) is None


# Everyday texts that share letters with crisis words, read by the shipped SMS flow.
SMS_ENGINE = load_flows(Settings().flows_dir).engine(Medium.SMS, "GB")


@pytest.mark.parametrize(
    "text", ["what are you doing?", "no I'm doing ok", "that's odd", "I'm coding", "cool"]
)
def test_everyday_words_are_not_read_as_a_crisis(text):
    assert not SMS_ENGINE.is_crisis(text)


@pytest.mark.parametrize(
    "text", ["he's ODing", "i think she OD", "overdoes", "he is unconcious", "not breathin"]
)
def test_crisis_words_are_found_with_a_slip_in_long_words(text):
    assert SMS_ENGINE.is_crisis(text), CRISIS_TYPO_FROM


def test_a_reply_folds_its_words_once():
    reply = Reply(text="No, please don't!")
    assert reply.words == ("NO", "PLEASE", "DONT") and reply.words is reply.words
