"""Login attempts limited per account (whether or not it exists) and per client address."""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from helpline.constants import KEY_PREFIX

FAILURES = f"{KEY_PREFIX}:login:failures:"
ADDRESS_FAILURES = f"{KEY_PREFIX}:login:from:"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class LoginThrottle:
    """Counts wrong passwords per username and per client address; too many lock for a while.

    Per username, wrong passwords in a row: unknown usernames are counted and locked
    exactly as real ones, so the lock says nothing about whether an account exists.
    Per address, every wrong password whatever the username, and a good login does not
    clear them: one address trying a common password on many accounts is stopped too.
    A lock runs from the latest wrong password. Keys hold digests, never what was typed
    or the address itself.
    """

    def __init__(
        self,
        client: redis.Redis,
        max_failures: int,
        lock_seconds: int,
        max_address_failures: int,
    ):
        self.client = client
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.max_address_failures = max_address_failures

    @staticmethod
    def _account_key(username: str) -> str:
        return FAILURES + _digest(username.strip().lower())

    @staticmethod
    def _address_key(address: str) -> str:
        return ADDRESS_FAILURES + _digest(address)

    def locked(self, username: str, address: str) -> bool:
        account, source = self.client.mget(self._account_key(username), self._address_key(address))
        return _at_least(account, self.max_failures) or _at_least(source, self.max_address_failures)

    def failed(self, username: str, address: str) -> int:
        """Count one wrong password; return the count for this username."""
        pipe = self.client.pipeline(transaction=True)
        for key in (self._account_key(username), self._address_key(address)):
            pipe.incr(key)
            pipe.expire(key, self.lock_seconds)
        count, _, _, _ = pipe.execute()
        return int(count)

    def succeeded(self, username: str) -> None:
        """Clear the username's count (the address keeps its own)."""
        self.client.delete(self._account_key(username))


def _at_least(raw: Any, limit: int) -> bool:
    return raw is not None and int(raw) >= limit
