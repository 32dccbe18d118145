"""Login attempts limited per account, whether or not the account exists."""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from helpline.constants import KEY_PREFIX

FAILURES = f"{KEY_PREFIX}:login:failures:"


class LoginThrottle:
    """Counts wrong passwords in a row per username; too many lock it for a while.

    Unknown usernames are counted and locked exactly as real ones, so the lock says
    nothing about whether an account exists. Keys hold a digest of the username, so
    whatever is typed cannot make long or odd keys.
    """

    def __init__(self, client: redis.Redis, max_failures: int, lock_seconds: int):
        self.client = client
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds

    def _key(self, username: str) -> str:
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        return FAILURES + digest

    def locked(self, username: str) -> bool:
        raw: Any = self.client.get(self._key(username))
        return raw is not None and int(raw) >= self.max_failures

    def failed(self, username: str) -> int:
        """Count one wrong password; the lock runs from the latest one."""
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(self._key(username))
        pipe.expire(self._key(username), self.lock_seconds)
        count, _ = pipe.execute()
        return int(count)

    def succeeded(self, username: str) -> None:
        self.client.delete(self._key(username))
