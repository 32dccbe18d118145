"""Blocked callers: someone who abuses the line cannot queue call backs for a while.

A block never stands between anyone and safety: a blocked caller still gets every
safety message, crisis reply and menu. It only stops new call back requests (and
check-ins), and the caller is told kindly where else to turn.

Keys (under helpline:blocks):
    blocks          zset keyed hash of the number -> when the block ends: the list
    blocks:<who>    hash: the block itself, expiring when it ends
        masked      the number's last three digits ("***123"), to recognise it by
        reason      why, sealed to this block (it may say more than it should)
        by, at      who blocked, when
        until       when the block ends
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from helpline.infrastructure.constants import KEY_PREFIX
from helpline.infrastructure.crypto import Sealer
from helpline.infrastructure.privacy import mask_phone, phone_digest
from helpline.infrastructure.records import as_text

BLOCKS = f"{KEY_PREFIX}:blocks"
DEFAULT_BLOCK_DAYS = 30
MAX_BLOCK_DAYS = 366
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Block:
    who: str  # keyed hash of the number: how a block is found and removed from a list
    masked: str
    reason: str
    by: str
    at: float
    until: float

    @property
    def ends(self) -> str:
        return datetime.fromtimestamp(self.until, UTC).strftime("%Y-%m-%d")


def _aad(who: str) -> str:
    return f"block/{who}"


class Blocks:
    """Who may not queue call backs, until when, and why."""

    def __init__(
        self,
        client: redis.Redis,
        sealer: Sealer,
        phone_key: bytes,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.sealer = sealer
        self.phone_key = phone_key
        self.clock = clock

    def who(self, number: str) -> str:
        return phone_digest(self.phone_key, number)

    def add(self, number: str, *, reason: str, days: float, by: str) -> Block:
        """Block a number (E.164) for `days`; blocking it again replaces the block."""
        reason = reason.strip()
        if not reason:
            raise ValueError("say why the caller is blocked")
        if len(reason) > MAX_REASON_CHARS:
            raise ValueError(f"keep the reason under {MAX_REASON_CHARS} characters")
        if not 0 < days <= MAX_BLOCK_DAYS:
            raise ValueError(f"a block lasts from 1 to {MAX_BLOCK_DAYS} days")
        who, now = self.who(number), self.clock()
        block = Block(who, mask_phone(number), reason, by, now, now + days * 86400)
        fields: dict[Any, Any] = {
            "masked": block.masked,
            "reason": self.sealer.seal(reason, _aad(who)),
            "by": by,
            "at": now,
            "until": block.until,
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(f"{BLOCKS}:{who}")
        pipe.hset(f"{BLOCKS}:{who}", mapping=fields)
        pipe.expireat(f"{BLOCKS}:{who}", int(block.until) + 1)
        pipe.zadd(BLOCKS, {who: block.until})
        pipe.execute()
        return block

    def blocked(self, number: str) -> bool:
        """Whether the number may not queue call backs now."""
        return bool(self.client.exists(f"{BLOCKS}:{self.who(number)}"))

    def remove(self, who: str) -> bool:
        """Lift the block kept under this keyed hash; False if there was none."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(f"{BLOCKS}:{who}")
        pipe.zrem(BLOCKS, who)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def remove_number(self, number: str) -> bool:
        return self.remove(self.who(number))

    def all(self) -> list[Block]:
        """Every block in force, ending soonest first; ended ones are dropped from the list."""
        self.client.zremrangebyscore(BLOCKS, "-inf", self.clock())
        found = []
        for raw in self.client.zrange(BLOCKS, 0, -1):
            who = as_text(raw)
            values = {as_text(k): v for k, v in self.client.hgetall(f"{BLOCKS}:{who}").items()}
            if not values:
                continue
            found.append(
                Block(
                    who=who,
                    masked=as_text(values["masked"]),
                    reason=self.sealer.open(values["reason"], _aad(who)),
                    by=as_text(values["by"]),
                    at=float(values["at"]),
                    until=float(values["until"]),
                )
            )
        return found
