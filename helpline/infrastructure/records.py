"""Fields kept on a record's Redis hash, and the texts sent about the record.

A call back request and a check-in session are each one hash; both keep there how far
each text about them got (see workers.jobs.send_once), and set fields only while the
record exists, so a purge between a read and a write never leaves half a record behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from helpline.infrastructure.store import durable

# Sets fields only on a record that still exists.  KEYS: the hash.  ARGV: field, value, ...
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


@dataclass(frozen=True)
class SendRecord:
    """How far one text about a record got."""

    result: str | None  # Twilio's SID, "opted-out" or "failed:<code>": it is settled
    started: float | None  # an attempt began then and has not been settled
    text: str | None  # what that attempt sent


class HashRecords:
    """The hashes under one key prefix, each a record named by its id."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        guard: Callable[[Callable[[], Any]], Any],
        min_replicas: int = 0,
    ):
        self.client = client
        self.prefix = prefix
        self.guard = guard  # turns Redis errors into the owner's own
        self.min_replicas = min_replicas  # replicas a "sending" marker must reach first
        self._set_if_exists = client.register_script(_SET_IF_EXISTS)

    def set(self, rid: str, **fields: str | float) -> bool:
        """Set fields on a record if it still exists; return whether it did."""
        return self.set_kept(rid, fields, 0)

    def set_on(self, pipe: Pipeline, rid: str, **fields: str) -> None:
        """Queue, on a pipeline the caller sends, setting fields if the record still exists."""
        flat = [part for pair in fields.items() for part in pair]
        self._set_if_exists(keys=[self.prefix + rid], args=flat, client=pipe)

    def set_kept(self, rid: str, fields: dict[str, str | float], replicas: int) -> bool:
        """Set fields as set() does; with replicas, raise NotDurable unless that many
        replicas took them in time."""
        flat = [str(part) for pair in fields.items() for part in pair]

        def write(pipe: Pipeline) -> object:
            return self._set_if_exists(keys=[self.prefix + rid], args=flat, client=pipe)

        (done,) = self.guard(lambda: durable(self.client, write, replicas))
        return bool(done)

    def send_record(self, rid: str, kind: str) -> SendRecord:
        """Return how far the text of this kind about the record got."""
        names = [f"sent:{kind}", f"sending:{kind}", f"text:{kind}"]
        result, started, text = self.guard(lambda: self.client.hmget(self.prefix + rid, names))
        return SendRecord(
            result=None if result is None else as_text(result),
            started=None if started is None else float(started),
            text=None if text is None else as_text(text),
        )

    def sending(self, rid: str, kind: str, text: str, at: float) -> bool:
        """Record that a text of this kind is about to go (so a retry can look for it).

        Raises NotDurable if too few replicas took the record: after a failover, a retry
        would not know to look, and could send the text twice.
        """
        fields: dict[str, str | float] = {f"sending:{kind}": at, f"text:{kind}": text}
        return self.set_kept(rid, fields, self.min_replicas)

    def settle_send(self, rid: str, kind: str, result: str) -> bool:
        """Record how a text ended: Twilio's SID, "opted-out" or "failed:<code>"."""
        return self.set(rid, **{f"sent:{kind}": result})


def as_text(raw: object) -> str:
    """A value as Redis gave it (bytes, or already text from a script), as text."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)
