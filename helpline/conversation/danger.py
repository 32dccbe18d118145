"""Read a message for danger now: an overdose, or suicide and self-harm. Pure and fast.

The words are content, one set per language (flows/content/<lang>.yaml), named after
the flow's crisis_words and self_harm_words ids:

  crisis            someone is in danger now ("not breathing", "won't wake", "lips are
                    grey", "overdosing"): always danger
  crisis_event      an overdose that may be over ("overdosed", "took an overdose", "took
                    too much"): danger, unless the message places it in the past or asks
                    about it in general (crisis_not_now: "last year", "if someone")
  crisis_word       a word that names an overdose ("overdose", "OD"): danger in a short
                    message, or in a longer one that neither dates it nor asks about it
  crisis_not        what cancels any phrase it overlaps ("not suicidal", "don't want to
                    die", "too much coffee")
  self_harm         thoughts of suicide or self-harm ("kill myself", "suicidal")

Every message is read once against one index of all of these, so the cost stays that of
a few dictionary lookups a word.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from helpline.conversation.matching import PhraseIndex
from helpline.conversation.model import Content
from helpline.infrastructure.constants import NAMED_OVERDOSE_MAX_WORDS

EVENT, WORD, NOT_NOW, NOT = "_event", "_word", "_not_now", "_not"


class Danger(StrEnum):
    OVERDOSE = "overdose"  # someone is in danger from an overdose now
    SELF_HARM = "self_harm"  # someone may take their life or harm themselves
    NAMED = "named"  # a short message naming an overdose: it may be one, or the topic


class DangerReader:
    """Reads folded words (matching.tokens) for danger, in every language at once."""

    def __init__(
        self,
        content: Content,
        crisis: str | None,
        self_harm: str | None,
        *,
        fuzzy: bool,
        typo_from: int,
    ):
        self._index = PhraseIndex(fuzzy=fuzzy, typo_from=typo_from)
        self._crisis = crisis or ""
        self._self_harm = self_harm or ""
        lists = []
        if crisis:
            lists += [crisis, *(crisis + suffix for suffix in (EVENT, WORD, NOT_NOW, NOT))]
        if self_harm:
            lists.append(self_harm)
        for key in lists:
            self._index.add(content.all_phrase_tokens(key), key)

    def read(self, words: Sequence[str]) -> Danger | None:
        """Return the danger the words speak of, or None.

        Words as written are read first, and only if they say nothing, words with a slip
        forgiven: "overdose" is the word itself, not "overdosed" mistyped.
        """
        hits = self._index.hits(words)
        if not hits:
            return None
        exact = [hit for hit in hits if hit[3]]
        danger = self._judge(exact, len(words)) if exact else None
        if danger is None and len(exact) < len(hits):
            # A slip is forgiven only where no phrase matched as written.
            forgiven = [
                hit
                for hit in hits
                if not hit[3] and not any(hit[1] < e and s < hit[2] for _, s, e, _ in exact)
            ]
            if forgiven:
                danger = self._judge(exact + forgiven, len(words))
        return danger

    def _judge(self, hits: list[tuple[str, int, int, bool]], length: int) -> Danger | None:
        guards = [(start, end) for label, start, end, _ in hits if label == self._crisis + NOT]
        found = {
            label
            for label, start, end, _ in hits
            if not any(start < until and since < end for since, until in guards)
        }
        if self._crisis in found:
            return Danger.OVERDOSE
        if self._self_harm in found:
            return Danger.SELF_HARM
        if self._crisis + EVENT in found and self._crisis + NOT_NOW not in found:
            return Danger.OVERDOSE
        if self._crisis + WORD in found and (
            length <= NAMED_OVERDOSE_MAX_WORDS or self._crisis + NOT_NOW not in found
        ):
            return Danger.NAMED
        return None
