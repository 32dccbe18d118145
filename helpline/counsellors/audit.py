"""The audit log: who did what to which request, and when. Never a phone number.

Kept as a Redis stream (helpline:audit) so entries are ordered, timestamped by Redis
and trimmed to a bounded length. Every field is a short plain value chosen by the
code (an action name, a username, a request id), never caller input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from helpline.infrastructure.constants import AUDIT_MAX_ENTRIES, AUDIT_PAGE_ENTRIES, KEY_PREFIX

AUDIT = f"{KEY_PREFIX}:audit"


@dataclass(frozen=True)
class Entry:
    id: str
    at: float
    actor: str
    action: str
    request: str
    detail: str

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class AuditLog:
    """Appends to and reads the audit stream."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def record(self, actor: str, action: str, request: str = "", detail: str = "") -> None:
        """Append one entry; detail is a short code-chosen word, never caller data."""
        fields: dict[Any, Any] = {
            "at": f"{time.time():.3f}",
            "actor": actor,
            "action": action,
            "request": request,
            "detail": detail,
        }
        self.client.xadd(AUDIT, fields, maxlen=AUDIT_MAX_ENTRIES, approximate=True)

    def trim(self, older_than: float) -> int:
        """Delete entries written before the epoch time older_than; return how many."""
        return int(self.client.xtrim(AUDIT, minid=f"{int(older_than * 1000)}-0", approximate=False))

    def recent(self, count: int = AUDIT_PAGE_ENTRIES, action: str | None = None) -> list[Entry]:
        """Return the newest entries first (only those of one action, if given)."""
        # A filtered read looks further back; the stream is bounded, so this is too.
        limit = count if action is None else count * 20
        raw: Any = self.client.xrevrange(AUDIT, count=limit)
        entries = [_entry(entry_id, fields) for entry_id, fields in raw]
        if action is not None:
            entries = [e for e in entries if e.action == action][:count]
        return entries


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    values = {k.decode(): v.decode() for k, v in fields.items()}
    return Entry(
        id=entry_id.decode(),
        at=float(values.get("at", "0")),
        actor=values.get("actor", ""),
        action=values.get("action", ""),
        request=values.get("request", ""),
        detail=values.get("detail", ""),
    )
