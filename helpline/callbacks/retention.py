"""The retention purge: what is past its time goes, in one place for every caller of it."""

from __future__ import annotations

import time

from helpline.callbacks.queue import CallbackQueue
from helpline.counsellors.audit import AuditLog


def purge(queue: CallbackQueue, audit: AuditLog, retention_days: float) -> int:
    """Delete closed requests (with their notes) and audit entries older than retention.

    Returns how many requests went; after it, nothing of their callers is left.
    """
    seconds = retention_days * 24 * 60 * 60
    removed = queue.purge(seconds)
    audit.trim(older_than=time.time() - seconds)
    return removed
