"""The Redis connection used by the web process, with a breaker for when Redis is down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpline.infrastructure.constants import (
    REDIS_BREAKER_SECONDS,
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def connect(url: str, *, fast_fail: bool = True) -> redis.Redis:
    """Return a client for url; fast_fail keeps a webhook from waiting on a sick Redis."""
    if not fast_fail:
        return redis.Redis.from_url(url)
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


class Store:
    """Runs Redis calls for webhooks; failures open a short breaker and return a default."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        breaker_seconds: float = REDIS_BREAKER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.breaker_seconds = breaker_seconds
        self.clock = clock
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.clock() >= self._open_until

    def trip(self) -> None:
        """Open the breaker: Redis just failed outside attempt()."""
        with self._lock:
            self._open_until = self.clock() + self.breaker_seconds

    def attempt(self, what: str, call: Callable[[redis.Redis], T], default: T) -> T:
        """Return call(client), or default if Redis is down, slow or the breaker is open."""
        if not self.available:
            return default
        try:
            return call(self.client)
        except (redis.RedisError, OSError) as exc:
            self.trip()
            log.error(
                "redis unavailable during %s; answering without it for %ss",
                what,
                self.breaker_seconds,
                extra={"error": type(exc).__name__},
            )
            return default
