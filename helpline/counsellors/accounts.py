"""Counsellor accounts: who may log in to the console, who is on duty, their phones.

Keys:
    helpline:counsellor:<username>   hash: name, role, password hash, on duty, disabled,
                                     phone (sealed to the username)
    helpline:counsellors             set of usernames
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from werkzeug.security import check_password_hash, generate_password_hash

from helpline.infrastructure.constants import KEY_PREFIX, MIN_PASSWORD_CHARS, PASSWORD_METHOD
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.errors import QueueError
from helpline.infrastructure.privacy import mask_phone

ACCOUNT = f"{KEY_PREFIX}:counsellor:"
ACCOUNTS = f"{KEY_PREFIX}:counsellors"
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")


@functools.cache
def _dummy_hash(method: str) -> str:
    """Checked against when a username is unknown, so a wrong username takes as long as a
    wrong password and the two cannot be told apart by timing."""
    return generate_password_hash("not a real password", method=method)


class Role(StrEnum):
    COUNSELLOR = "counsellor"
    ADMIN = "admin"


class AccountError(QueueError):
    """An account could not be created or changed as asked."""


@dataclass(frozen=True)
class Counsellor:
    username: str
    name: str
    role: Role
    on_duty: bool
    disabled: bool
    phone_masked: str

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN


class Counsellors:
    """The counsellor accounts in Redis."""

    def __init__(
        self, client: redis.Redis, sealer: Sealer, *, password_method: str = PASSWORD_METHOD
    ):
        self.client = client
        self.password_method = password_method
        self.sealer = sealer

    def add(
        self, username: str, *, name: str, phone: str, password: str, admin: bool = False
    ) -> Counsellor:
        """Create an account; the phone must already be E.164 (infrastructure.phones)."""
        if not USERNAME.match(username):
            raise AccountError(
                "a username is 2-32 characters: lower-case letters, digits, dot, dash, underscore"
            )
        if len(password) < MIN_PASSWORD_CHARS:
            raise AccountError(f"the password must be at least {MIN_PASSWORD_CHARS} characters")
        if not name.strip():
            raise AccountError("give the counsellor's name")
        fields: dict[Any, Any] = {
            "username": username,
            "name": name.strip(),
            "role": (Role.ADMIN if admin else Role.COUNSELLOR).value,
            "password": generate_password_hash(password, method=self.password_method),
            "on_duty": "0",
            "disabled": "0",
            "phone": self.sealer.seal(phone, f"counsellor:{username}"),
            "created": str(time.time()),
        }
        if not self.client.sadd(ACCOUNTS, username):
            raise AccountError(f"there is already a counsellor called {username!r}")
        self.client.hset(ACCOUNT + username, mapping=fields)
        account = self.get(username)
        assert account is not None
        return account

    def get(self, username: str) -> Counsellor | None:
        raw: dict[Any, Any] = self.client.hgetall(ACCOUNT + username)
        if not raw:
            return None
        values = {k.decode(): v.decode() for k, v in raw.items()}
        return Counsellor(
            username=values["username"],
            name=values["name"],
            role=Role(values["role"]),
            on_duty=values.get("on_duty") == "1",
            disabled=values.get("disabled") == "1",
            phone_masked=mask_phone(self.phone(username)),
        )

    def all(self) -> list[Counsellor]:
        members: set[Any] = self.client.smembers(ACCOUNTS)
        names = sorted(n.decode() for n in members)
        return [c for c in (self.get(n) for n in names) if c is not None]

    def on_duty(self) -> list[Counsellor]:
        return [c for c in self.all() if c.on_duty and not c.disabled]

    def phone(self, username: str) -> str:
        """Return a counsellor's own number, for alerts and bridged calls only."""
        sealed = self.client.hget(ACCOUNT + username, "phone")
        if sealed is None:
            raise AccountError(f"no counsellor called {username!r}")
        return self.sealer.open(sealed, f"counsellor:{username}")

    def set_on_duty(self, username: str, on_duty: bool) -> None:
        self._set(username, "on_duty", "1" if on_duty else "0")

    def set_disabled(self, username: str, disabled: bool) -> None:
        self._set(username, "disabled", "1" if disabled else "0")
        if disabled:
            self._set(username, "on_duty", "0")

    def authenticate(self, username: str, password: str) -> Counsellor | None:
        """Return the account if the password is right and the account enabled; else None."""
        stored: Any = (
            self.client.hget(ACCOUNT + username, "password") if USERNAME.match(username) else None
        )
        if stored is None:
            check_password_hash(_dummy_hash(self.password_method), password)
            return None
        if not check_password_hash(stored.decode(), password):
            return None
        account = self.get(username)
        return account if account and not account.disabled else None

    def _set(self, username: str, field: str, value: str) -> None:
        if not self.client.sismember(ACCOUNTS, username):
            raise AccountError(f"no counsellor called {username!r}")
        self.client.hset(ACCOUNT + username, field, value)
