"""How often one caller may text and call before we answer with the safety essentials only.

A flood of texts from one number (or one person dialling again and again) must not fill
the queue, text other people or run up costs; but whoever is over the limit still gets
the emergency number with every answer, and a crisis phrase is always answered. Over
the limit nothing is kept and nothing is sent but the reply itself. Redis down: no limit
(an answer matters more than the count).

Keys (one per sender and window, expiring with it):
    <channel>:rate:<who>:<minute>    texts this minute (counted in the text's own read)
    voice:calls:<who>:<hour>         calls this hour
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from helpline.conversation.channels import Channel
from helpline.infrastructure.constants import KEY_PREFIX
from helpline.infrastructure.metrics import RATE_LIMITED
from helpline.infrastructure.phones import callable_number
from helpline.infrastructure.privacy import phone_digest
from helpline.infrastructure.store import Store
from helpline.reports import tally


class RateLimits:
    """Texts per minute and calls per hour, per sender (by keyed hash)."""

    def __init__(
        self,
        store: Store,
        phone_key: bytes,
        *,
        texts_per_minute: int,
        calls_per_hour: int,
        region: str,
        reports: tally.Pending,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.phone_key = phone_key
        self.texts_per_minute = texts_per_minute
        self.calls_per_hour = calls_per_hour
        self.region = region
        self.reports = reports  # counts with no write of their own ride on the call's
        self.clock = clock

    def text_counter(self, channel: Channel, who: str) -> tuple[str, int]:
        """The key counting this sender's texts this minute, and how long it lives."""
        return f"{KEY_PREFIX}:{channel.name}:rate:{who}:{int(self.clock() // 60)}", 120

    def too_many_texts(self, channel: Channel, count: int) -> bool:
        """Whether the count of texts this minute is over the limit (and count it)."""
        if count <= self.texts_per_minute:
            return False
        RATE_LIMITED.labels(channel.name).inc()
        self.reports.add(tally.FAILSAFE + "limit")
        return True

    def call_allowed(self, caller_id: str) -> bool:
        """Count a new call from caller_id; False once they are over the hour's limit.

        Withheld and unreadable caller IDs are not counted: they are not one person. Every
        call is counted in the reports, in the same round trip (a withheld one, with the
        process's next write).
        """
        number = callable_number(caller_id, self.region)
        if number is None:
            self.reports.add(tally.contacts("voice"))
            return True
        who = phone_digest(self.phone_key, number)
        key = f"{KEY_PREFIX}:voice:calls:{who}:{int(self.clock() // 3600)}"

        def count(client: Any) -> int:
            pipe = client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 7200)
            self.reports.count(pipe, [tally.contacts("voice")])
            self.reports.drain(pipe)
            return int(pipe.execute()[0])

        if self.store.attempt("call count", count, 0) <= self.calls_per_hour:
            return True
        RATE_LIMITED.labels("voice").inc()
        self.reports.add(tally.FAILSAFE + "limit")
        return False
