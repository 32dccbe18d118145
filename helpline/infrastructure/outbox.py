"""The local outbox: texts and calls recorded instead of sent, for development and demos.

In development without Twilio credentials (or with HELPLINE_OUTBOX=local) the workers
are given a LocalOutbox in place of Twilio's REST client. It answers the calls the
outbound module makes (messages.create and .list, calls.create) the way the client
does, and keeps what would have gone out, so nothing fails and retries forever for want
of an account. Production never uses it: the settings refuse it there.

Keys:
    outbox      list of JSON records, newest first, at most OUTBOX_KEPT: sid, kind
                (message or call), from, at, and sealed to the record (a number and
                what it was told are never kept in plain text): to, body or url
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from helpline.infrastructure.constants import KEY_PREFIX
from helpline.infrastructure.crypto import Sealer

OUTBOX = f"{KEY_PREFIX}:outbox"
OUTBOX_KEPT = 500


@dataclass(frozen=True)
class Recorded:
    """One text or call the outbox kept, in the shape Twilio's client returns."""

    sid: str
    kind: str  # "message" or "call"
    to: str
    from_: str
    at: float
    body: str = ""  # a text's words (a template's variables, for a template)
    url: str = ""  # where a call would have fetched its TwiML

    @property
    def date_created(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)


class _Messages:
    def __init__(self, outbox: LocalOutbox):
        self.outbox = outbox

    def create(
        self,
        *,
        to: str,
        from_: str,
        body: str | None = None,
        content_sid: str | None = None,
        content_variables: str | None = None,
        **_: Any,
    ) -> Recorded:
        words = body if body is not None else f"[template {content_sid}] {content_variables}"
        return self.outbox.record("message", "SM", to=to, from_=from_, body=words)

    def list(self, *, to: str | None = None, from_: str | None = None, limit: int = 50) -> list:
        found = [
            entry
            for entry in self.outbox.entries(OUTBOX_KEPT)
            if entry.kind == "message" and to in (None, entry.to) and from_ in (None, entry.from_)
        ]
        return found[:limit]


class _Calls:
    def __init__(self, outbox: LocalOutbox):
        self.outbox = outbox

    def create(self, *, to: str, from_: str, url: str, **_: Any) -> Recorded:
        return self.outbox.record("call", "CA", to=to, from_=from_, url=url)


class LocalOutbox:
    """Twilio's REST client for the workers, keeping messages and calls instead of sending."""

    def __init__(self, client: redis.Redis, sealer: Sealer, clock: Callable[[], float] = time.time):
        self.client = client
        self.sealer = sealer
        self.clock = clock
        self.messages = _Messages(self)
        self.calls = _Calls(self)

    def record(self, kind: str, prefix: str, *, to: str, from_: str, **what: str) -> Recorded:
        sid = prefix + secrets.token_hex(16)
        entry = Recorded(sid=sid, kind=kind, to=to, from_=from_, at=self.clock(), **what)
        private = json.dumps({"to": to, **what}, separators=(",", ":"))
        stored = {"sid": sid, "kind": kind, "from": from_, "at": entry.at}
        stored["sealed"] = self.sealer.seal(private, f"outbox/{sid}")
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(OUTBOX, json.dumps(stored, separators=(",", ":")))
        pipe.ltrim(OUTBOX, 0, OUTBOX_KEPT - 1)
        pipe.execute()
        return entry

    def entries(self, limit: int = 100) -> list[Recorded]:
        """What was kept, newest first."""
        found = []
        for raw in self.client.lrange(OUTBOX, 0, limit - 1):
            stored = json.loads(raw)
            private = json.loads(self.sealer.open(stored["sealed"], f"outbox/{stored['sid']}"))
            found.append(
                Recorded(
                    sid=stored["sid"],
                    kind=stored["kind"],
                    from_=stored["from"],
                    at=float(stored["at"]),
                    to=private.pop("to"),
                    **private,
                )
            )
        return found
