"""Real processes for tests of more than one process: web servers, workers, a Redis with
replicas watched by Sentinel, and callers texting the helpline over HTTP."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pytest
import redis as redis_py

from helpline.infrastructure.embedded import redis_server_binary
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    HELPLINE_NUMBER,
    PROCESS_WAIT_SECONDS,
    SECRET_KEY,
    UNLIMITED,
    sign,
    sms_replies,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Twilio waits 15 s for a webhook's answer; so do the callers here.
TWILIO_TIMEOUT = 15.0


# The name under which a test's measured figures travel with its report.
FIGURES = "figures"


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Show a test's measured figures in pytest's output, captured or not, when it ends.

    They travel with the test's report, so they are shown from an xdist worker too
    (conftest's pytest_runtest_logreport writes them).
    """
    request.node.user_properties.append((FIGURES, line))


# Ports handed to servers a test starts: below the kernel's ephemeral range (32768 up), so
# no outgoing connection takes one between the check and the server's own bind.
PORTS = range(10_000, 32_000)
_handed: set[int] = set()
_draw = random.SystemRandom()  # not the random module's state, which a test may seed


def _own_ports() -> range:
    """Return this test process's share of PORTS: each xdist worker has its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    size = len(PORTS) // max(count, 1)
    start = PORTS.start + size * index
    return range(start, start + size)


def free_port() -> int:
    """Return a port nobody listens on that no other test process will be handed.

    Each xdist worker draws from its own share, never twice, at random so that
    another test run on the same machine is unlikely to draw it too.
    """
    own = _own_ports()
    for _ in range(len(own)):
        port = _draw.choice(own)
        if port in _handed:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        _handed.add(port)
        return port
    raise AssertionError(f"no free port left in {own}")


def helpline_env(data_dir: Path, twilio_api_url: str, **redis: str) -> dict[str, str]:
    """Return the environment a web or worker process of the test runs with."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PUBLIC_URL", "PORT", "WEB_CONCURRENCY", "HELPLINE_ENV", "REDIS_URL")
    }
    env.update(
        HELPLINE_DATA_DIR=str(data_dir),
        TWILIO_API_URL=twilio_api_url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        SECRET_KEY=SECRET_KEY,
        HELPLINE_PHONE_NUMBER=HELPLINE_NUMBER,
        HELPLINE_TEXTS_PER_MINUTE=str(UNLIMITED),
        HELPLINE_CALLS_PER_HOUR=str(UNLIMITED),
        **redis,
    )
    return env


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process and everything in its group; kill it if it does not go."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=PROCESS_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=PROCESS_WAIT_SECONDS)


def healthy(port: int, process: subprocess.Popen[bytes]) -> bool:
    """Return whether the web process on port answers /healthz; fail if it has exited."""
    assert process.poll() is None, f"the web process on port {port} exited early"
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def serving(
    commands: dict[str, list[str]], env: dict[str, str], port: int, logs: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Run processes as an operator would (by name, each logging to logs/<name>.log) until
    the web on port answers /healthz; stop them all when the block ends."""
    with ExitStack() as stack:
        processes = {}
        for name, command in commands.items():
            processes[name] = _start(command, env, logs / f"{name.replace(' ', '-')}.log")
            stack.callback(stop, processes[name])

        def up() -> bool:
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited early"
            return healthy(port, next(iter(processes.values())))

        wait_until(up, PROCESS_WAIT_SECONDS, what=f"the web on port {port} to answer /healthz")
        yield processes


@contextmanager
def webs(count: int, env: dict[str, str], logs: Path) -> Iterator[list[int]]:
    """Run `helpline web` (gunicorn) count times, each on its own port; yield the ports."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "helpline", "web", "--host", HOST, "--port", str(port)]
            process = _start(command, env, logs / f"web-{port}.log")
            stack.callback(stop, process)
            ports.append((port, process))
        for port, process in ports:
            wait_until(
                lambda port=port, process=process: healthy(port, process),
                PROCESS_WAIT_SECONDS,
                what=f"the web on port {port} to answer /healthz",
            )
        yield [port for port, _ in ports]


@contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[list[int]]:
    """Run count real worker processes (short intervals); yield their pids."""
    with ExitStack() as stack:
        pids = []
        for n in range(count):
            process = _start(
                [sys.executable, "-m", "tests.worker_process"], env, logs / f"worker-{n}.log"
            )
            stack.callback(stop, process)
            pids.append(process.pid)
        yield pids


# -- callers -----------------------------------------------------------------------------


class Heard(StrEnum):
    """What a texter made of the helpline's last reply."""

    QUEUED = "queued"  # "You're on the list"
    ALREADY = "already"  # "already on our list"
    NOT_QUEUED = "not queued"  # "you're not on the list": try again
    FAILSAFE = "failsafe"  # "we can't reply properly right now"
    OTHER = "other"  # anything else (a step of the conversation)
    ERROR = "error"  # no answer, or not a 200: what Twilio would count as a failure


_HEARD = [
    (re.compile(r"You're on the list"), Heard.QUEUED),
    (re.compile(r"already on our list"), Heard.ALREADY),
    (re.compile(r"not on the list"), Heard.NOT_QUEUED),
    (re.compile(r"can't reply properly"), Heard.FAILSAFE),
]


def hear(reply: str) -> Heard:
    return next((heard for pattern, heard in _HEARD if pattern.search(reply)), Heard.OTHER)


@dataclass
class Reply:
    heard: Heard
    text: str
    began: float  # time.monotonic() when the webhook was sent
    ended: float
    status: int | None = None


def post_sms(port: int, form: dict[str, str]) -> Reply:
    """Deliver one text to the web on port as Twilio does (signed); return what came back."""
    url = f"http://{HOST}:{port}/twilio/sms"
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"X-Twilio-Signature": sign(url, form)},
    )
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=TWILIO_TIMEOUT) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        return Reply(Heard.ERROR, f"HTTP {exc.code}", began, time.monotonic(), exc.code)
    except OSError as exc:
        return Reply(Heard.ERROR, type(exc).__name__, began, time.monotonic())
    if status != 200:
        return Reply(Heard.ERROR, f"HTTP {status}", began, time.monotonic(), status)
    text = "\n".join(sms_replies(body))
    return Reply(hear(text), text, began, time.monotonic(), status)


def texter_number(n: int) -> str:
    """Return the n-th (0-999) texter: a UK number kept for drama, which cannot be called."""
    return f"+447700900{n:03d}"


@dataclass
class Texter:
    """Someone asking by text to be called back on another number, voicemail and texts OK."""

    sender: str
    callback: str
    replies: list[Reply] = field(default_factory=list)

    def steps(self) -> list[str]:
        # At risk? No. A break from using? No. The number. Voicemail? Yes. Texts? Yes.
        return ["TALK", "2", "2", self.callback, "1", "1"]

    def form(self, body: str, message_sid: str) -> dict[str, str]:
        return {
            "From": self.sender,
            "To": HELPLINE_NUMBER,
            "Body": body,
            "MessageSid": message_sid,
            "AccountSid": ACCOUNT_SID,
            "NumMedia": "0",
        }


# -- Redis with replicas and Sentinel ------------------------------------------------------

MASTER_NAME = "helpline"
# Sentinel calls a silent master down after this long, and then fails over.
DOWN_AFTER_MS = 1000


class RedisWithSentinel:
    """A master, its replicas and three Sentinels, each a real redis-server on loopback."""

    def __init__(self, root: Path, replicas: int, sentinels: int = 3):
        self.root = root
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.servers: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinels: dict[int, subprocess.Popen[bytes]] = {}
        self.first_master = 0

    @property
    def env(self) -> dict[str, str]:
        """The settings that point the helpline at this Sentinel."""
        return {
            "REDIS_SENTINELS": ",".join(f"{HOST}:{port}" for port in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def _server(self, port: int, *extra: str) -> None:
        command = [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(self.root),
            "--dbfilename",
            f"dump-{port}.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
            # A new replica syncs at once, from memory: no snapshot on disk, no delay.
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            *extra,
        ]
        self.servers[port] = _start(command, {}, self.root / f"redis-{port}.log")

    def _sentinel(self, port: int) -> None:
        config = self.root / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\n"
            f"bind {HOST}\n"
            f"dir {self.root}\n"
            f"sentinel monitor {MASTER_NAME} {HOST} {self.first_master} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} {self.replica_count}\n"
        )
        command = [redis_server_binary(), str(config), "--sentinel"]
        self.sentinels[port] = _start(command, {}, self.root / f"sentinel-{port}.log")

    def start(self) -> None:
        self.first_master = free_port()
        self._server(self.first_master)
        for _ in range(self.replica_count):
            self._server(free_port(), "--replicaof", HOST, str(self.first_master))
        for _ in range(self.sentinel_count):
            self._sentinel(free_port())
        wait_until(self._ready, PROCESS_WAIT_SECONDS, what="replicas in sync, Sentinels agreed")

    def _ready(self) -> bool:
        try:
            info = self.client(self.first_master).info("replication")
            synced = [
                value
                for key, value in info.items()
                if key.startswith("slave") and isinstance(value, dict)
                if value.get("state") == "online"
            ]
            if len(synced) < self.replica_count:
                return False
            for port in self.sentinels:
                state = self.client(port).sentinel_master(MASTER_NAME)
                if state["num-slaves"] < self.replica_count:
                    return False
                if state["num-other-sentinels"] < self.sentinel_count - 1:
                    return False
        except (redis_py.RedisError, OSError):
            return False
        return True

    def client(self, port: int) -> redis_py.Redis:
        return redis_py.Redis(HOST, port, socket_timeout=5)

    def master(self) -> int:
        """Return the port of the master every Sentinel names now."""
        port = self.agreed_master()
        assert port is not None, "the Sentinels do not agree on the master"
        return port

    def agreed_master(self) -> int | None:
        """Return the port of the master every Sentinel names; None while they differ."""
        try:
            named = {
                int(self.client(port).sentinel_master(MASTER_NAME)["port"])
                for port in self.sentinels
            }
        except (redis_py.RedisError, OSError):
            return None
        return named.pop() if len(named) == 1 else None

    def failed_over(self, old: int) -> int:
        """Wait until every Sentinel names a master other than old; return its port."""
        wait_until(
            lambda: self.agreed_master() not in (None, old),
            PROCESS_WAIT_SECONDS,
            what="every Sentinel to name the new master",
        )
        return self.master()

    def add_server(self) -> int:
        """Start another master, which nothing replicates; return its port."""
        port = free_port()
        self._server(port)
        wait_until(lambda: self._answers(port), PROCESS_WAIT_SECONDS, what="the new server")
        return port

    def _answers(self, port: int) -> bool:
        try:
            return bool(self.client(port).ping())
        except (redis_py.RedisError, OSError):
            return False

    def watch(self, port: int) -> None:
        """Make every Sentinel watch the server on port as the master, from now on.

        Unlike a failover Sentinel runs itself, clients connected to the old master stay
        connected: what a client sees after a partition, or a switch it was not told of.
        """
        for sentinel in self.sentinels:
            client = self.client(sentinel)
            client.sentinel_remove(MASTER_NAME)
            client.sentinel_monitor(MASTER_NAME, HOST, port, 2)
        wait_until(
            lambda: self.agreed_master() == port, what="every Sentinel to name the new master"
        )

    def kill(self, port: int) -> None:
        """Kill a server outright, as a crash or a lost machine would."""
        self.servers[port].send_signal(signal.SIGKILL)
        self.servers[port].wait(timeout=PROCESS_WAIT_SECONDS)

    def stop(self) -> None:
        for process in [*self.sentinels.values(), *self.servers.values()]:
            stop(process)
