"""Login throttling that stops password guessing without letting a stranger lock anyone out.

Wrong passwords are counted in scopes. Past its free tries a scope makes the next try
wait, LOGIN_FIRST_DELAY_SECONDS doubling with each further wrong password up to
LOGIN_LOCK_SECONDS, counted from its latest wrong password (OWASP's exponential
lockout). Which scopes a try answers to depends on where it comes from (OWASP's
"Slow Down Online Guessing Attacks with Device Cookies"):

* From a known device (a browser holding the signed cookie of an earlier good login to
  this account): only that device's own count. Whatever strangers do to the account or
  from the counsellor's address, the counsellor's own browser still gets in, and a
  stolen device cookie buys no more tries than anyone has.
* From anywhere else, three counts: this account from this address; this account from
  every unknown client together (a botnet spreading guesses over many addresses meets
  it; reaching it is worth telling the account holder); and this address over every
  account (one client trying a common password on many accounts).

Tries refused while waiting are neither checked nor counted. A good login clears its
own device's or address's count for the account; the rest lapse LOGIN_WINDOW_SECONDS
after their latest wrong password, or when an admin unlocks the account. Unknown
usernames are counted exactly as real ones, so nothing tells whether an account exists.
Keys hold digests, never what was typed or the address itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import redis

from helpline.infrastructure.constants import (
    KEY_PREFIX,
    LOGIN_FIRST_DELAY_SECONDS,
    LOGIN_LOCK_SECONDS,
    LOGIN_MAX_ACCOUNT_FAILURES,
    LOGIN_MAX_ADDRESS_FAILURES,
    LOGIN_MAX_FAILURES,
    LOGIN_WINDOW_SECONDS,
)

LOGINS = f"{KEY_PREFIX}:login:"
ACCOUNT = LOGINS + "account:"  # <account>: every unknown client's wrong passwords
PAIR = LOGINS + "pair:"  # <account>:<address>
ADDRESS = LOGINS + "from:"  # <address>, whatever the usernames
DEVICE = LOGINS + "device:"  # <account>:<device>
# Doublings of the wait before it reaches LOGIN_LOCK_SECONDS at the latest.
_MAX_DOUBLINGS = 16


def digest(value: str) -> str:
    """Return the short hash that stands for a username, address or device in keys."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def account_digest(username: str) -> str:
    """Return the digest that stands for an account, however its name was typed."""
    return digest(username.strip().lower())


def wait_after(failures: int, free: int) -> float:
    """Return how long a try must wait after the latest of `failures` wrong passwords."""
    if failures < free:
        return 0.0
    doublings = min(failures - free, _MAX_DOUBLINGS)
    return float(min(LOGIN_FIRST_DELAY_SECONDS * 2**doublings, LOGIN_LOCK_SECONDS))


class LoginThrottle:
    """Counts wrong passwords per scope in Redis; says how long the next try must wait."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock

    @staticmethod
    def _scopes(username: str, address: str, device: str | None) -> list[tuple[str, int]]:
        """Return the (key, free tries) a try answers to."""
        user = account_digest(username)
        if device:
            return [(f"{DEVICE}{user}:{digest(device)}", LOGIN_MAX_FAILURES)]
        return [
            (f"{PAIR}{user}:{digest(address)}", LOGIN_MAX_FAILURES),
            (ACCOUNT + user, LOGIN_MAX_ACCOUNT_FAILURES),
            (ADDRESS + digest(address), LOGIN_MAX_ADDRESS_FAILURES),
        ]

    def wait(self, username: str, address: str, device: str | None = None) -> float:
        """Return the seconds this try must still wait; 0 when its password may be checked.

        device: the nonce of a valid device cookie for this username, else None.
        """
        scopes = self._scopes(username, address, device)
        pipe = self.client.pipeline(transaction=False)
        for key, _ in scopes:
            pipe.hmget(key, ["n", "t"])
        until = max(
            _until(raw, free) for raw, (_, free) in zip(pipe.execute(), scopes, strict=True)
        )
        return max(until - self.clock(), 0.0)

    def failed(self, username: str, address: str, device: str | None = None) -> bool:
        """Count a wrong password; True when it is the one that slows the whole account."""
        scopes = self._scopes(username, address, device)
        pipe = self.client.pipeline(transaction=True)
        for key, _ in scopes:
            pipe.hincrby(key, "n", 1)
            pipe.hset(key, "t", self.clock())
            pipe.expire(key, LOGIN_WINDOW_SECONDS)
        counts = pipe.execute()[::3]
        return device is None and counts[1] == LOGIN_MAX_ACCOUNT_FAILURES

    def succeeded(self, username: str, address: str, device: str | None = None) -> None:
        """Clear the count this client built up for the account (not the account-wide one)."""
        self.client.delete(self._scopes(username, address, device)[0][0])

    def slowed_until(self, username: str) -> float | None:
        """Return until when unknown clients must wait to try this account; None if not."""
        raw = self.client.hmget(ACCOUNT + account_digest(username), ["n", "t"])
        until = _until(raw, LOGIN_MAX_ACCOUNT_FAILURES)
        return until if until > self.clock() else None

    def unlock(self, username: str) -> None:
        """Forget every count for an account: its own, and its addresses' and devices'."""
        user = account_digest(username)
        keys = [ACCOUNT + user]
        for prefix in (PAIR, DEVICE):
            keys += self.client.scan_iter(match=f"{prefix}{user}:*", count=1000)
        self.client.delete(*keys)


def _until(raw: Any, free: int) -> float:
    """Return when a scope's wait ends (0 when it has none), from its stored n and t."""
    count, last = raw
    if count is None or last is None:
        return 0.0
    wait = wait_after(int(count), free)
    return float(last) + wait if wait else 0.0
