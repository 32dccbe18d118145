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

    def __init__(self, client: redis.Redis, prefix: str, guard: Callable[[Callable[[], Any]], Any]):
        self.client = client
        self.prefix = prefix
        self.guard = guard  # turns Redis errors into the owner's own
        self._set_if_exists = client.register_script(_SET_IF_EXISTS)

    def set(self, rid: str, **fields: str | float) -> bool:
        """Set fields on a record if it still exists; return whether it did."""
        flat = [str(part) for pair in fields.items() for part in pair]
        return bool(self.guard(lambda: self._set_if_exists(keys=[self.prefix + rid], args=flat)))

    def send_record(self, rid: str, kind: str) -> SendRecord:
        """Return how far the text of this kind about the record got."""
        names = [f"sent:{kind}", f"sending:{kind}", f"text:{kind}"]
        result, started, text = self.guard(lambda: self.client.hmget(self.prefix + rid, names))
        return SendRecord(
            result=None if result is None else _text(result),
            started=None if started is None else float(started),
            text=None if text is None else _text(text),
        )

    def sending(self, rid: str, kind: str, text: str, at: float) -> bool:
        """Record that a text of this kind is about to go (so a retry can look for it)."""
        fields: dict[str, str | float] = {f"sending:{kind}": at, f"text:{kind}": text}
        return self.set(rid, **fields)

    def settle_send(self, rid: str, kind: str, result: str) -> bool:
        """Record how a text ended: Twilio's SID, "opted-out" or "failed:<code>"."""
        return self.set(rid, **{f"sent:{kind}": result})


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
