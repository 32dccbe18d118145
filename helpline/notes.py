"""Counsellors' notes on a callback request, encrypted and bound to that request.

Notes are fields of the request's own hash (note:<ns>:<username>), so the retention
purge that deletes a request deletes its notes with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from helpline.callbacks import REQ
from helpline.crypto import Sealer

NOTE_FIELD = "note:"
# Sets a field only on a request that still exists: a purge between a read and this write
# must not leave a half-request behind.
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Note:
    author: str
    at: float
    text: str

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _aad(rid: str) -> str:
    return f"{rid}/note"


class Notes:
    """Encrypted notes and small annotations on requests."""

    def __init__(self, client: redis.Redis, sealer: Sealer):
        self.client = client
        self.sealer = sealer
        self._set_if_exists = client.register_script(_SET_IF_EXISTS)

    def annotate(self, rid: str, field: str, value: str) -> bool:
        """Set one field on a request if it still exists; return whether it did."""
        return bool(self._set_if_exists(keys=[REQ + rid], args=[field, value]))

    def add(self, rid: str, author: str, text: str) -> bool:
        """Save a note, sealed to this request; return False if the request is gone."""
        field = f"{NOTE_FIELD}{time.time_ns()}:{author}"
        return self.annotate(rid, field, self.sealer.seal(text, _aad(rid)))

    def list(self, rid: str) -> list[Note]:
        """Return the request's notes, oldest first."""
        raw: Any = self.client.hgetall(REQ + rid)
        notes = []
        for key, value in raw.items():
            name = key.decode()
            if not name.startswith(NOTE_FIELD):
                continue
            stamp, _, author = name[len(NOTE_FIELD) :].partition(":")
            notes.append(Note(author, int(stamp) / 1e9, self.sealer.open(value, _aad(rid))))
        return sorted(notes, key=lambda note: note.at)

    def field(self, rid: str, field: str) -> str | None:
        raw: Any = self.client.hget(REQ + rid, field)
        return raw.decode() if raw is not None else None
