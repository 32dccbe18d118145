"""Forgiving text matching for keywords, menu choices, speech and crisis phrases."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence

from helpline.infrastructure.constants import MAX_INPUT_CHARS

_NON_WORD = re.compile(r"[^0-9A-Z]+")


def tokens(text: str) -> tuple[str, ...]:
    """Fold case, accents, punctuation and spacing into a tuple of plain A-Z0-9 words."""
    text = text[:MAX_INPUT_CHARS]
    # Drop apostrophes inside words so "won't" and "wont" agree.
    text = text.replace("'", "").replace("\u2019", "")
    if not text.isascii():  # plain ASCII has no accents or wide forms to fold
        folded = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return tuple(t for t in _NON_WORD.split(text.upper()) if t)


def as_choice(
    text: str, numbers: Mapping[str, str], words: Sequence[str] | None = None
) -> str | None:
    """Return the menu key a short reply stands for ("2", "2.", "two", "*"), if any.

    numbers: the words for keys, folded ({"TWO": "2"}: each language's, from its content
    file). words: tokens(text), when the caller has them already.
    """
    stripped = text.strip()
    if stripped in {"*", "#"}:
        return stripped
    if words is None:
        words = tokens(stripped[:20])
    if len(words) != 1:
        return None
    word = words[0]
    if word.isdigit() and len(word) <= 2:
        return word
    return numbers.get(word)


def edit_distance_at_most_one(a: str, b: str) -> bool:
    """Return True if a and b differ by at most one insertion, deletion, substitution or swap."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diffs = [i for i in range(la) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        i, j = diffs[0], diffs[-1]
        return len(diffs) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    if la > lb:
        a, b = b, a
    # b is one longer: find the single insertion.
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def _word_matches(word: str, wanted: str, typo_from: int | None) -> bool:
    # Short words must be exact ("OD" must not match "OK"); longer ones forgive one slip
    # of the thumb. typo_from=None asks for exact words only.
    if word == wanted:
        return True
    return (
        typo_from is not None
        and len(wanted) >= typo_from
        and (edit_distance_at_most_one(word, wanted))
    )


def _phrase_at(
    words: Sequence[str], phrase: Sequence[str], start: int, typo_from: int | None
) -> bool:
    return all(_word_matches(words[start + k], phrase[k], typo_from) for k in range(len(phrase)))


# Words this long or longer forgive one slip when matching is fuzzy.
TYPO_FROM = 5


def contains_phrase(
    words: Sequence[str],
    phrases: Iterable[Sequence[str]],
    *,
    fuzzy: bool = False,
    typo_from: int = TYPO_FROM,
) -> bool:
    """Return True if any phrase appears, word for word, anywhere in the words."""
    return first_phrase(words, phrases, fuzzy=fuzzy, typo_from=typo_from) is not None


def first_phrase(
    words: Sequence[str],
    phrases: Iterable[Sequence[str]],
    *,
    fuzzy: bool = False,
    typo_from: int = TYPO_FROM,
) -> tuple[int, int] | None:
    """Return where the earliest phrase starts and, negated, how long the longest there is.

    A reply is read as a person reads it: "no, please don't" is a no, although "please"
    says yes, because the no comes first; at the same place the longer phrase wins, so
    "I am not" beats "I am". The pair sorts so that the better match is the smaller.
    """
    forgive = typo_from if fuzzy else None
    best: tuple[int, int] | None = None
    for phrase in phrases:
        n = len(phrase)
        for i in range(len(words) - n + 1 if n else 0):
            if best is not None and (i, -n) >= best:
                break
            if _phrase_at(words, phrase, i, forgive):
                best = (i, -n)
                break
    return best


class _Branch:
    """One word of a phrase tree: the words that may follow, and the labels ending here."""

    __slots__ = ("labels", "near", "next")

    def __init__(self) -> None:
        self.next: dict[str, _Branch] = {}
        self.near: dict[str, list[str]] = {}  # a following word minus any one letter -> it
        self.labels: list[str] = []


class PhraseIndex:
    """Phrases in a tree of words, for finding any of many in a long message.

    contains(words) answers exactly as contains_phrase(words, phrases, fuzzy=...) does,
    but walks the tree from each word of the message instead of trying every phrase at
    every position: phrases that share their first words (thousands, from a pattern) are
    followed together, a dictionary lookup a word. With fuzzy, each forgiving word is also
    filed under itself minus any one letter; two words one slip apart (insertion,
    deletion, substitution or swap) always share such a key, so no candidate is missed,
    and every candidate is then checked in full.

    Phrases can carry a label (add), and hits(words) says where each one was found.
    """

    def __init__(
        self,
        phrases: Iterable[Sequence[str]] = (),
        *,
        fuzzy: bool = False,
        typo_from: int = TYPO_FROM,
        label: str = "",
    ):
        self.typo_from = typo_from if fuzzy else None
        self._root = _Branch()
        self.add(phrases, label)

    def add(self, phrases: Iterable[Sequence[str]], label: str = "") -> None:
        """File more phrases, each found under this label."""
        for phrase in phrases:
            if not phrase:
                continue
            branch = self._root
            for word in phrase:
                following = branch.next.get(word)
                if following is None:
                    following = branch.next[word] = _Branch()
                    if self._forgives(word):
                        for key in self._keys(word, True):
                            branch.near.setdefault(key, []).append(word)
                branch = following
            if label not in branch.labels:
                branch.labels.append(label)

    def _forgives(self, wanted: str) -> bool:
        return self.typo_from is not None and len(wanted) >= self.typo_from

    @staticmethod
    def _keys(word: str, with_deletions: bool) -> set[str]:
        keys = {word}
        if with_deletions:
            keys.update(word[:i] + word[i + 1 :] for i in range(len(word)))
        return keys

    def _found(self, words: Sequence[str]) -> Iterator[tuple[str, int, int, bool]]:
        # A message word one slip from a forgiving word is at most one letter shorter;
        # its keys are worked out once, when a branch first asks for them.
        shortest = None if self.typo_from is None else self.typo_from - 1
        keys: dict[int, set[str]] = {}
        for start in range(len(words)):
            pending = [(self._root, start, True)]
            while pending:
                branch, at, exact = pending.pop()
                if at == len(words):
                    continue
                word = words[at]
                following = branch.next.get(word)
                if following is not None:
                    for label in following.labels:
                        yield label, start, at + 1, exact
                    pending.append((following, at + 1, exact))
                if not branch.near or shortest is None or len(word) < shortest:
                    continue
                if at not in keys:
                    keys[at] = self._keys(word, True)
                seen = {word}
                for key in keys[at]:
                    for wanted in branch.near.get(key, ()):
                        if wanted not in seen and edit_distance_at_most_one(word, wanted):
                            seen.add(wanted)
                            near = branch.next[wanted]
                            for label in near.labels:
                                yield label, start, at + 1, False
                            pending.append((near, at + 1, False))

    def contains(self, words: Sequence[str]) -> bool:
        """Return True if any phrase appears, word for word, anywhere in the words."""
        return next(self._found(words), None) is not None

    def hits(self, words: Sequence[str]) -> list[tuple[str, int, int, bool]]:
        """Return (label, start, end, exact) for every phrase found, end exclusive;
        exact is False where a slip was forgiven."""
        return list(self._found(words))


def is_keyword(
    words: Sequence[str], phrases: Iterable[Sequence[str]], *, fuzzy: bool = False
) -> bool:
    """Return True if the message is the phrase, give or take one trailing word."""
    typo_from = 4 if fuzzy else None
    for phrase in phrases:
        n = len(phrase)
        # "SAFE", "safe please", "menu pls": the keyword leads a message of at most n+1 words.
        if n and n <= len(words) <= n + 1 and _phrase_at(words, phrase, 0, typo_from):
            return True
    return False


class KeywordIndex:
    """Which of several keywords, each a list of phrases, a whole message is, if any.

    find(words, fuzzy=...) answers as trying is_keyword on each keyword in order would,
    with a few dictionary lookups instead of a pass over every phrase. As in PhraseIndex,
    with fuzzy each first word is also filed under itself minus any one letter, so a
    first word one slip away always shares a key with it.
    """

    TYPO_FROM = 4  # is_keyword's, when fuzzy

    def __init__(self, keywords: Iterable[Iterable[Sequence[str]]]):
        self._exact: dict[tuple[str, ...], int] = {}
        self._by_key: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        for order, phrases in enumerate(keywords):
            for phrase in map(tuple, phrases):
                if not phrase:
                    continue
                self._exact.setdefault(phrase, order)
                forgives = len(phrase[0]) >= self.TYPO_FROM
                for key in PhraseIndex._keys(phrase[0], forgives):
                    self._by_key.setdefault(key, []).append((order, phrase))

    def find(self, words: Sequence[str], *, fuzzy: bool = False) -> int | None:
        """Return the position of the first keyword the message is, or None."""
        if not words:
            return None
        # The keyword alone, or followed by one more word ("SAFE please").
        whole, all_but_last = tuple(words), tuple(words[:-1])
        hits = [self._exact[c] for c in (whole, all_but_last) if c and c in self._exact]
        if not fuzzy:
            return min(hits) if hits else None
        first = words[0]
        for key in PhraseIndex._keys(first, len(first) >= self.TYPO_FROM - 1):
            for order, phrase in self._by_key.get(key, ()):
                n = len(phrase)
                if n <= len(words) <= n + 1 and _phrase_at(words, phrase, 0, self.TYPO_FROM):
                    hits.append(order)
        return min(hits) if hits else None
