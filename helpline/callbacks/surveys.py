"""Follow-up surveys: which call backs are due one, and which numbers owe us an answer.

After a counsellor reached a caller, one text asks how much the call helped (1 to 5).
Keys (under helpline:survey:), none holding a number or anything a caller wrote:
    due          zset request id -> when its survey text is due (the workers' housekeeping
                 hands each on to a job once it is due)
    open:<who>   the survey waiting for an answer from a number (its keyed hash), JSON
                 {"request": id, "lang": code}; expires SURVEY_OPEN_SECONDS after the text
An answer's score is counted in the day's report counters and nothing else is kept of it,
unless an admin keeps the words: then they are sealed onto the request (survey_words)
and go with it at the retention purge.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.client import Pipeline

from helpline.callbacks.queue import CallbackQueue
from helpline.infrastructure.constants import KEY_PREFIX, SURVEY_OPEN_SECONDS

PREFIX = f"{KEY_PREFIX}:survey:"
DUE = PREFIX + "due"
OPEN = PREFIX + "open:"
# Due surveys one housekeeping pass hands on (bounds its time; the rest wait a pass).
DUE_BATCH = 100
# The request field an answer's words are sealed into, when they are kept.
WORDS_FIELD = "survey_words"


def open_key(who: str) -> str:
    """The key that is set while a survey waits for an answer from `who` (keyed hash)."""
    return OPEN + who


@dataclass(frozen=True)
class Pending:
    """A survey text that went, waiting for its answer."""

    request: str
    lang: str


class Surveys:
    """The surveys' Redis keys; every method is one round trip (close: one transaction)."""

    def __init__(self, client: redis.Redis, queue: CallbackQueue):
        self.client = client
        self.queue = queue

    def schedule(self, rid: str, at: float) -> bool:
        """Make a request's survey due at `at`, unless it already has a time; True if now."""
        return bool(self.client.zadd(DUE, {rid: at}, nx=True))

    def due(self, now: float, limit: int = DUE_BATCH) -> list[str]:
        """Return the ids of requests whose survey is due by now, oldest first."""
        raw = self.client.zrangebyscore(DUE, "-inf", now, start=0, num=limit)
        return [rid.decode() for rid in cast(list[bytes], raw)]

    def handed_on(self, rid: str) -> None:
        """Take a request off the due list: its job is queued (or it needs none)."""
        self.client.zrem(DUE, rid)

    def open(self, who: str, pending: Pending, seconds: float = SURVEY_OPEN_SECONDS) -> None:
        """Wait for the number `who` (keyed hash) to answer; replaces an older survey's."""
        value = json.dumps({"request": pending.request, "lang": pending.lang})
        self.client.set(open_key(who), value, ex=int(seconds))

    def withdraw(self, who: str, rid: str) -> None:
        """Stop waiting for an answer to this request's survey (its text did not go)."""
        pending = self.pending(who)
        if pending is not None and pending.request == rid:
            self.client.delete(open_key(who))

    def pending(self, who: str) -> Pending | None:
        """Return the survey waiting for an answer from `who`, if any."""
        return _decode(self.client.get(open_key(who)))

    def sealed_words(self, rid: str) -> str | None:
        """Return the words kept from a request's survey answer, still sealed, if any."""
        return self.queue.annotation(rid, WORDS_FIELD)

    def close(
        self,
        who: str,
        writes: Callable[[Pipeline, Pending], None],
        sealed_words: Callable[[Pending], str] | None = None,
    ) -> Pending | None:
        """Close the survey waiting for `who` and, in the same transaction, queue `writes`
        (the day's counts) and the sealed words, if given; None if no survey was waiting
        (or another text closed it first: an answer is counted once)."""
        key = open_key(who)
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                pending = _decode(pipe.get(key))
                if pending is None:
                    return None
                pipe.multi()
                pipe.delete(key)
                writes(pipe, pending)
                if sealed_words is not None:
                    words = {WORDS_FIELD: sealed_words(pending)}
                    self.queue.annotate_on(pipe, pending.request, **words)
                pipe.execute()
            except redis.WatchError:
                return None
        return pending


def _decode(raw: Any) -> Pending | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    rid, lang = value.get("request"), value.get("lang")
    if not isinstance(rid, str) or not isinstance(lang, str):
        return None
    return Pending(rid, lang)
