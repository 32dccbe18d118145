"""Counsellors' notes on a callback request, encrypted and bound to that request.

Notes are fields of the request's own record (note:<ns>:<username>, kept by
helpline.callbacks.queue), so the retention purge that deletes a request deletes its notes
with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from helpline.callbacks.queue import CallbackQueue

NOTE_FIELD = "note:"


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
    """Encrypted notes on requests."""

    def __init__(self, queue: CallbackQueue):
        self.queue = queue

    def add(self, rid: str, author: str, text: str) -> bool:
        """Save a note, sealed to this request; return False if the request is gone."""
        field = f"{NOTE_FIELD}{time.time_ns()}:{author}"
        return self.queue.annotate(rid, **{field: self.queue.sealer.seal(text, _aad(rid))})

    def list(self, rid: str) -> list[Note]:
        """Return the request's notes, oldest first."""
        notes = []
        for name, value in self.queue.annotations(rid, NOTE_FIELD).items():
            stamp, _, author = name[len(NOTE_FIELD) :].partition(":")
            notes.append(Note(author, int(stamp) / 1e9, self.queue.sealer.open(value, _aad(rid))))
        return sorted(notes, key=lambda note: note.at)
