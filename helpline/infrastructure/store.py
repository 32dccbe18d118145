"""Connecting to Redis (one server, or the master Sentinel names), and the webhooks' breaker.

A master that has been demoted to a replica answers writes with READONLY, inside a Lua
script too: every client made here treats that as a lost connection, so the command
is retried (by a client that retries) on whichever server is master now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.connection import Connection, SSLConnection
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from helpline.infrastructure.constants import (
    REDIS_BREAKER_SECONDS,
    REDIS_CONNECT_TIMEOUT,
    REDIS_REPLICA_WAIT_SECONDS,
    REDIS_SOCKET_TIMEOUT,
)
from helpline.infrastructure.errors import NotDurable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SentinelTarget:
    """Where Sentinel runs and which master it watches for us."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    password: str | None = None  # the master's (and its replicas')
    sentinel_password: str | None = None


def _is_readonly(exc: redis.ResponseError) -> bool:
    # A script's write on a replica comes back as "... -READONLY You can't write ...".
    return isinstance(exc, redis.ReadOnlyError) or "-READONLY " in str(exc)


class _ReadOnlyMeansReconnect:
    """Mixin for connections: READONLY from a demoted master is a lost connection."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.ResponseError as exc:
            if not _is_readonly(exc):
                raise
            self.disconnect()  # type: ignore[attr-defined]
            raise redis.ConnectionError("this Redis is a read-only replica now") from None


class _TcpConnection(_ReadOnlyMeansReconnect, Connection):
    pass


class _TlsConnection(_ReadOnlyMeansReconnect, SSLConnection):
    pass


class _SentinelConnection(_ReadOnlyMeansReconnect, SentinelManagedConnection):
    """Asks Sentinel where the master is on every connect, a retry's reconnect included.

    redis-py's own asks only when the pool hands the connection out; a command retried
    on the same connection reconnects to the address it had (the dead or demoted
    master), so a client that retries until Redis answers would never move on.
    """

    def connect(self) -> None:
        self.connect_check_health(check_health=self.connection_pool.check_connection)

    def _connect(self) -> Any:
        self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


def client_options(*, fast_fail: bool, retry: Retry | None = None) -> dict[str, Any]:
    """Return the client options: fast_fail keeps a webhook from waiting on a sick Redis."""
    options: dict[str, Any] = {}
    if fast_fail:
        options.update(
            socket_timeout=REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
    if retry is not None:
        options["retry"] = retry
    return options


def connect(url: str, *, fast_fail: bool = True, retry: Retry | None = None) -> redis.Redis:
    """Return a client for url; fast_fail keeps a webhook from waiting on a sick Redis."""
    options = client_options(fast_fail=fast_fail, retry=retry)
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        options["connection_class"] = _TlsConnection if scheme == "rediss" else _TcpConnection
    return redis.Redis.from_url(url, **options)


def connect_sentinel(
    target: SentinelTarget,
    *,
    fast_fail: bool = True,
    retry: Retry | None = None,
) -> redis.Redis:
    """Return a client for the master Sentinel names now, and after every failover."""
    options = client_options(fast_fail=fast_fail, retry=retry)
    sentinel_options: dict[str, Any] = {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    if target.password:
        options["password"] = target.password
    return sentinel.master_for(target.master, connection_class=_SentinelConnection, **options)


def durable(
    client: redis.Redis,
    write: Callable[[Pipeline], object],
    replicas: int,
    timeout: float = REDIS_REPLICA_WAIT_SECONDS,
) -> list[Any]:
    """Send the writes write() queues on a pipeline; return their results once `replicas`
    replicas hold them.

    WAIT counts the replicas that have this connection's writes, so it goes in the same
    pipeline. Raises NotDurable if too few had them within timeout: the writes may be
    lost in a failover, so nobody should be told they are kept.
    """
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        write(pipe)
        if replicas > 0:
            pipe.wait(replicas, max(1, round(timeout * 1000)))
        try:
            results = list(pipe.execute())
        except redis.exceptions.NoScriptError:
            # The pipeline reconnected to a new master, which lacks the scripts it loaded
            # on the old one; none of them ran. Building it again loads them there.
            if attempt:
                raise
            continue
        if replicas <= 0:
            return results
        *results, acknowledged = results
        if int(acknowledged) < replicas:
            raise NotDurable(f"{acknowledged} of {replicas} replicas took the write in time")
        return results
    raise AssertionError("unreachable")


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
