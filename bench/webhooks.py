"""Benchmark the voice and SMS webhooks under gunicorn against two baselines, on this machine.

The baselines, served under the same gunicorn settings and loaded in the same interleaved
rounds: a bare Flask app returning fixed TwiML (bench/bare_app.py), and an equal-work app
(bench/equal_work_app.py) that checks the signature and, for a text, makes the same Redis
read and write as the helpline, then returns fixed TwiML.

Run: .venv/bin/python bench/webhooks.py   (defaults: gevent worker class, 2 workers, keep-alive
5 s, as the Procfile runs it; --compare sync also serves the apps under the old sync set-up and
loads them in the same interleaved rounds; try e.g. --worker-class gthread --threads 4)
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis
from twilio.request_validator import RequestValidator

from helpline.infrastructure import embedded
from helpline.infrastructure.constants import WEB_KEEPALIVE_SECONDS

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"

# Fixed test values: never real credentials.
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
SECRET_KEY = "bench-secret-key-" + "k" * 48
HELPLINE_NUMBER = "+447700900999"
# Ofcom's drama range (07700 900000-900999): never a real subscriber.
CALLERS = tuple(f"+447700900{n:03d}" for n in range(1000))
SMS_BODIES = ("SAFE", "1", "menu")
ACCOUNT_SID = "AC" + "0" * 32

CONNECTIONS = 16
WORKER_CLASSES = ("sync", "gthread", "gevent")
STEP_PATH = "/twilio/voice/step?node=main&lang=en&r=0"
# Upper bound on req/s this machine reaches, to size the pool of distinct texts.
MAX_RATE = 6000
GOAL_RATIO = 0.6
# Against the equal-work baseline: what the helpline's own logic may cost on top.
GOAL_EQUAL_RATIO = 0.8
GOAL_P99_MS = 15.0
SOCKET_TIMEOUT = 10.0
BOOT_SECONDS = 30.0
# Environment variables that would change what the helpline under test does.
SCRUBBED_ENV = (
    "PUBLIC_URL",
    "HELPLINE_ENV",
    "HELPLINE_REGION",
    "HELPLINE_ENCRYPTION_KEY",
    "TWILIO_API_URL",
    "HELPLINE_PHONE_NUMBER",
    "PORT",
)


# -- requests ---------------------------------------------------------------------------


def signed_request(
    validator: RequestValidator, port: int, path: str, params: dict[str, str]
) -> bytes:
    """Return the raw bytes of a form POST signed the way Twilio signs it."""
    body = urllib.parse.urlencode(params).encode()
    signature = validator.compute_signature(f"http://{HOST}:{port}{path}", params)
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "User-Agent: TwilioProxy/1.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Twilio-Signature: {signature}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


def call_form(index: int, **extra: str) -> dict[str, str]:
    """Return the form of one voice webhook, for the call numbered index."""
    form = {
        "CallSid": f"CA{index:032x}",
        "AccountSid": ACCOUNT_SID,
        "From": CALLERS[index % len(CALLERS)],
        "To": HELPLINE_NUMBER,
        "CallStatus": "in-progress",
        "Direction": "inbound",
    }
    form.update(extra)
    return form


def sms_form(index: int) -> dict[str, str]:
    """Return the form of one incoming text: callers and bodies cycle, every MessageSid is new."""
    return {
        "MessageSid": f"SM{index:032x}",
        "AccountSid": ACCOUNT_SID,
        "From": CALLERS[index % len(CALLERS)],
        "To": HELPLINE_NUMBER,
        "Body": SMS_BODIES[index % len(SMS_BODIES)],
        "NumMedia": "0",
    }


def voice_requests(port: int, path: str, count: int, **extra: str) -> list[bytes]:
    """Return count signed voice requests to path, one CallSid each."""
    validator = RequestValidator(AUTH_TOKEN)
    return [signed_request(validator, port, path, call_form(i, **extra)) for i in range(count)]


def sms_requests(port: int, count: int, first: int = 0) -> list[bytes]:
    """Return count signed SMS requests, each with its own MessageSid from first on."""
    validator = RequestValidator(AUTH_TOKEN)
    return [
        signed_request(validator, port, "/twilio/sms", sms_form(i))
        for i in range(first, first + count)
    ]


# -- a minimal keep-alive HTTP/1.1 client -----------------------------------------------


class Connection:
    """One persistent connection that sends pre-built requests and reads whole responses."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def close(self) -> None:
        """Close the socket, if open."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and return (status, body); status 0 means the exchange failed."""
        reused = self.sock is not None
        try:
            return self._exchange(request)
        except (OSError, ValueError):
            self.close()
            if not reused:
                return 0, b""
        # The server closed an idle keep-alive connection: retry once on a fresh one.
        try:
            return self._exchange(request)
        except (OSError, ValueError):
            self.close()
            return 0, b""

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=SOCKET_TIMEOUT)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        sock.sendall(request)
        buffer = b""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += self._recv(sock)
        lines = buffer[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length: int | None = None
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
            elif name == "transfer-encoding":
                raise ValueError("chunked responses are not expected here")
        body = buffer[end + 4 :]
        if length is None:
            close = True
            while chunk := sock.recv(65536):
                body += chunk
        else:
            while len(body) < length:
                body += self._recv(sock)
        if close:
            self.close()
        return status, body

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        return chunk


# -- servers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GunicornConfig:
    """The gunicorn settings shared by the bare app and the helpline."""

    worker_class: str
    workers: int
    threads: int
    keepalive: int

    def describe(self) -> str:
        """Return the settings in a few words."""
        if self.worker_class == "sync":
            return f"sync, {self.workers} workers"
        if self.worker_class == "gevent":
            return f"gevent, {self.workers} workers, keep-alive {self.keepalive} s"
        return f"{self.worker_class}, {self.workers} workers x {self.threads} threads"


@dataclass
class Server:
    """A gunicorn master (in its own process group) and where its output goes."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_dir: Path
    workers: int

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines the server wrote."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's children (its workers), via /proc."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except (OSError, ValueError):
            return []


def free_port() -> int:
    """Return a TCP port on HOST that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    name: str, app: Sequence[str], config: GunicornConfig, env: dict[str, str], log_dir: Path
) -> Server:
    """Start gunicorn serving app with config, in its own session so it can be killed whole."""
    port = free_port()
    log_path = log_dir / f"{name}.log"
    ready_dir = log_dir / f"{name}-ready"
    ready_dir.mkdir()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(BENCH_DIR / "gunicorn_ready.py"),
        "--bind",
        f"{HOST}:{port}",
        "--worker-class",
        config.worker_class,
        "--workers",
        str(config.workers),
        "--threads",
        str(config.threads),
        "--keep-alive",
        str(config.keepalive),
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        *app,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env, BENCH_READY_DIR=str(ready_dir)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return Server(
        name=name,
        port=port,
        process=process,
        log_path=log_path,
        ready_dir=ready_dir,
        workers=config.workers,
    )


def wait_until_ready(server: Server) -> None:
    """Block until every worker has loaded its app and the port accepts; fail if gunicorn exits."""
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} gunicorn exited:\n{server.log_tail()}")
        if sum(1 for _ in server.ready_dir.iterdir()) >= server.workers:
            try:
                with socket.create_connection((HOST, server.port), timeout=1):
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} gunicorn was not ready within {BOOT_SECONDS:.0f}s")


def stop_server(server: Server) -> None:
    """Stop gunicorn gracefully, then kill its whole process group if it lingers."""
    stop_process(server.process, grace=10)


def stop_process(process: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a process started in its own session: SIGTERM, then SIGKILL to the group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=5)


def helpline_env(data_dir: Path, redis_url: str) -> dict[str, str]:
    """Return the environment for the helpline under test: development mode, test secrets."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        HELPLINE_ENV="development",
        HELPLINE_DATA_DIR=str(data_dir),
        REDIS_URL=redis_url,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        SECRET_KEY=SECRET_KEY,
        # The bench's few senders stand for many people: no rate limit.
        HELPLINE_TEXTS_PER_MINUTE="1000000",
        HELPLINE_CALLS_PER_HOUR="1000000",
    )
    return env


def cpu_seconds(pids: Sequence[int]) -> float:
    """Return the user+system CPU seconds the given processes have used, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy (not idle or waiting on I/O)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    ticks = [int(value) for value in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """Return the user+system CPU seconds this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- load -------------------------------------------------------------------------------


@dataclass
class Sample:
    """What one endpoint did during one measured slice."""

    latencies_ns: list[int]
    errors: int
    issued: int
    seconds: float
    server_cpu: float
    redis_cpu: float
    client_cpu: float
    machine_cpu: float


@dataclass
class Endpoint:
    """One URL under load, its pre-signed requests, and everything measured on it so far."""

    name: str
    port: int
    pool: list[bytes]
    pids: Callable[[], list[int]]
    redis_pids: Callable[[], list[int]] = list
    # The equal-work endpoint this one is compared with; None for the baselines themselves.
    equal: Endpoint | None = None
    samples: list[Sample] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def next_request(self) -> bytes:
        """Return the next request from the pool (thread-safe: next() on a count is atomic)."""
        return self.pool[next(self.counter) % len(self.pool)]

    @property
    def latencies_ns(self) -> list[int]:
        """Every measured latency, in nanoseconds."""
        return [value for sample in self.samples for value in sample.latencies_ns]

    @property
    def requests(self) -> int:
        """Requests measured."""
        return sum(len(sample.latencies_ns) for sample in self.samples)

    @property
    def errors(self) -> int:
        """Measured requests that did not get a 200."""
        return sum(sample.errors for sample in self.samples)

    @property
    def issued(self) -> int:
        """Requests sent, warm-up included."""
        return sum(sample.issued for sample in self.samples)

    @property
    def seconds(self) -> float:
        """Seconds measured."""
        return sum(sample.seconds for sample in self.samples)

    @property
    def throughput(self) -> float:
        """Measured requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def cpu_per_request_us(self, kind: str) -> float:
        """Return the CPU microseconds one measured request cost: server or redis."""
        if not self.requests:
            return 0.0
        used: float = sum(getattr(s, f"{kind}_cpu") for s in self.samples)
        return used / self.requests * 1e6

    def cores(self, kind: str) -> float:
        """Return the average cores used during measurement: server, redis, client or machine."""
        if self.seconds <= 0:
            return 0.0
        used: float = sum(getattr(s, f"{kind}_cpu") for s in self.samples)
        return used / self.seconds

    def percentile_ms(self, q: int) -> float:
        """Return the q-th percentile latency in milliseconds."""
        values = self.latencies_ns
        if len(values) < 2:
            return values[0] / 1e6 if values else float("nan")
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] / 1e6


def load_slice(
    endpoint: Endpoint,
    connections: int,
    warmup: float,
    duration: float,
    rate: float | None = None,
) -> Sample:
    """Drive the endpoint from `connections` threads on fresh connections; measure after warmup.

    Without a rate each thread sends its next request as soon as it has the answer (closed
    loop: the server is saturated). With one, the threads together send `rate` requests a
    second on a fixed schedule (open loop), and a latency runs from when the request was
    due, so time spent waiting behind a slow answer counts.
    """
    barrier = threading.Barrier(connections + 1)
    window: dict[str, int] = {}
    latencies: list[list[int]] = [[] for _ in range(connections)]
    errors = [0] * connections
    issued = [0] * connections
    finished = [0] * connections

    def drive(slot: int) -> None:
        connection = Connection(endpoint.port)
        mine = latencies[slot]
        barrier.wait()
        measure_from, stop_at = window["from"], window["stop"]
        interval = int(connections / rate * 1e9) if rate else 0
        due = window["start"] + slot * interval // connections
        try:
            while (began := time.perf_counter_ns()) < stop_at:
                if interval:
                    if due > began:
                        time.sleep((due - began) / 1e9)
                    began, due = due, due + interval
                status, _ = connection.exchange(endpoint.next_request())
                ended = time.perf_counter_ns()
                issued[slot] += 1
                if began >= measure_from:
                    mine.append(ended - began)
                    if status != 200:
                        errors[slot] += 1
                    finished[slot] = ended
        finally:
            connection.close()

    threads = [threading.Thread(target=drive, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    window["start"] = time.perf_counter_ns()
    window["from"] = window["start"] + int(warmup * 1e9)
    window["stop"] = window["from"] + int(duration * 1e9)
    barrier.wait()
    time.sleep(max(0.0, (window["from"] - time.perf_counter_ns()) / 1e9))
    server_before, client_before = cpu_seconds(endpoint.pids()), own_cpu_seconds()
    redis_before = cpu_seconds(endpoint.redis_pids())
    machine_before = machine_busy_seconds()
    for thread in threads:
        thread.join()
    server_after, client_after = cpu_seconds(endpoint.pids()), own_cpu_seconds()
    redis_after = cpu_seconds(endpoint.redis_pids())
    machine_after = machine_busy_seconds()
    return Sample(
        latencies_ns=[value for mine in latencies for value in mine],
        errors=sum(errors),
        issued=sum(issued),
        seconds=(max(finished) - window["from"]) / 1e9 if any(finished) else 0.0,
        server_cpu=server_after - server_before,
        redis_cpu=redis_after - redis_before,
        client_cpu=client_after - client_before,
        machine_cpu=machine_after - machine_before,
    )


def check_answer(port: int, request: bytes, marker: bytes, what: str) -> None:
    """Send one request and insist on a 200 whose TwiML holds marker (so not the fail-safe)."""
    connection = Connection(port)
    try:
        status, body = connection.exchange(request)
    finally:
        connection.close()
    if status != 200 or marker not in body:
        raise RuntimeError(f"{what}: expected 200 with {marker!r}, got {status}: {body[:300]!r}")


# -- report -----------------------------------------------------------------------------


def round_ratios(endpoint: Endpoint, bare: Endpoint) -> list[float]:
    """Return, round by round, the endpoint's throughput over a baseline's (bare or equal)."""
    ratios = []
    for mine, base in zip(endpoint.samples, bare.samples, strict=True):
        if mine.seconds > 0 and base.seconds > 0 and base.latencies_ns:
            ratios.append(
                (len(mine.latencies_ns) / mine.seconds) / (len(base.latencies_ns) / base.seconds)
            )
    return ratios


def ratio_and_spread(endpoint: Endpoint, base: Endpoint) -> tuple[str, str]:
    """Return the endpoint's throughput over base's, and its lowest-highest round, as text."""
    ratio = endpoint.throughput / base.throughput if base.throughput else 0.0
    ratios = round_ratios(endpoint, base)
    return f"{ratio:.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"


def print_report(
    endpoints: list[Endpoint], bare: Endpoint, config: GunicornConfig, args: argparse.Namespace
) -> None:
    """Print the table, the notes and, per helpline endpoint, whether it met the goal."""
    cores = os.cpu_count() or 1
    print()
    print(f"gunicorn {config.describe()}; the same settings serve the baselines and the helpline")
    if config.worker_class == "sync":
        print("(sync workers close the connection after each response: every request connects)")
    elif args.new_connections:
        print("(Connection: close on every request: every request connects)")
    else:
        print("(connections are kept alive between requests)")
    print(
        f"redis-server: the embedded one (helpline.infrastructure.embedded), "
        f"appendfsync {args.redis_fsync}"
    )
    print(
        f"{args.connections} concurrent connections; {args.rounds} rounds, each "
        f"loading every endpoint in turn for {args.slice:g} s (after {args.slice_warmup:g} s "
        "warm-up on fresh connections), after one unmeasured warm-up round"
    )
    if args.rate:
        print(
            f"open loop: {args.rate:g} requests/s on a fixed schedule; latency counts from when "
            "each request was due (req/s below the rate: the server could not keep up)"
        )
    print(
        f"Note: the load generator (this Python process, {args.connections} threads) shares this "
        f"machine's {cores} CPU cores with gunicorn and redis-server: absolute figures are lower "
        "than with a separate client machine; the ratios to the baselines are what to compare."
    )
    print()
    header = (
        f"{'endpoint':<36} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'vs bare':>7} {'(rounds)':>11} {'vs equal':>8} {'(rounds)':>11}"
        f"  {'srv':>4} {'gen':>4} {'other':>5}  {'us/req':>6} {'redis':>5}"
    )
    print(header)
    print("-" * len(header))
    for endpoint in endpoints:
        ratio, spread = ratio_and_spread(endpoint, bare)
        equal_ratio, equal_spread = (
            ratio_and_spread(endpoint, endpoint.equal) if endpoint.equal else ("-", "")
        )
        other = max(
            0.0, endpoint.cores("machine") - endpoint.cores("server") - endpoint.cores("client")
        )
        print(
            f"{endpoint.name:<36} {endpoint.requests:>8} {endpoint.throughput:>7.0f} "
            f"{endpoint.percentile_ms(50):>7.2f} {endpoint.percentile_ms(99):>7.2f} "
            f"{endpoint.errors:>6} {ratio:>7} {spread:>11} {equal_ratio:>8} {equal_spread:>11}"
            f"  {endpoint.cores('server'):>4.2f} {endpoint.cores('client'):>4.2f} {other:>5.2f}"
            f"  {endpoint.cpu_per_request_us('server'):>6.0f} "
            f"{endpoint.cpu_per_request_us('redis'):>5.0f}"
        )
    print()
    print(
        "equal-work: the baseline doing the webhook's unavoidable work (twilio's signature "
        "check; for a text, the same Lua read and SET in the same Redis), fixed TwiML; "
        "vs equal: throughput over the equal-work endpoint's (voice for the voice webhooks, "
        "SMS for texts)."
    )
    print(
        f"vs bare: throughput over the bare app's; (rounds): the lowest and highest round. "
        f"CPU in cores (of {cores}): srv = gunicorn workers (+ redis-server for the helpline), "
        "gen = the load generator, other = everything else on the machine, kernel included. "
        "us/req: srv CPU per request in microseconds, of which redis: redis-server's "
        "(its fsyncs included)."
    )
    noisy = max(e.cores("machine") - e.cores("server") - e.cores("client") for e in endpoints)
    if noisy > 0.25:
        print(
            f"Warning: other processes used up to {noisy:.2f} cores during measurement; "
            "figures are noisier than usual (interleaved rounds keep the ratios comparable)."
        )
    for endpoint in endpoints:
        if endpoint.issued > len(endpoint.pool) and endpoint.name.startswith("POST /twilio/sms"):
            print(
                f"Note: {endpoint.name} reused requests ({endpoint.issued} sent, "
                f"{len(endpoint.pool)} distinct): repeats hit the retry cache"
            )
    print()
    for endpoint in endpoints:
        if endpoint.equal is None:
            continue
        ratio = endpoint.throughput / bare.throughput if bare.throughput else 0.0
        p99 = endpoint.percentile_ms(99)
        misses = [
            *([f"ratio {ratio:.2f} < {GOAL_RATIO:.1f}"] if ratio < GOAL_RATIO else []),
            *([f"p99 {p99:.1f} ms >= {GOAL_P99_MS:g} ms"] if p99 >= GOAL_P99_MS else []),
            *([f"{endpoint.errors} errors"] if endpoint.errors else []),
        ]
        verdict = f"NOT met ({', '.join(misses)})" if misses else "met"
        print(
            f"goal (>= {GOAL_RATIO:.1f} x bare req/s, p99 < {GOAL_P99_MS:g} ms, no errors) "
            f"{endpoint.name}: {verdict}"
        )
    for endpoint in endpoints:
        if endpoint.equal is None:
            continue
        equal = endpoint.equal
        ratio = endpoint.throughput / equal.throughput if equal.throughput else 0.0
        verdict = "met" if ratio >= GOAL_EQUAL_RATIO else f"NOT met (ratio {ratio:.2f})"
        print(f"goal (>= {GOAL_EQUAL_RATIO:.1f} x equal-work req/s) {endpoint.name}: {verdict}")


def log_problems(server: Server) -> list[str]:
    """Return the error and warning lines the server logged."""
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    markers = ('"level": "error"', '"level": "warning"', "[ERROR]", "[CRITICAL]", "Traceback")
    return [line for line in lines if any(marker in line for marker in markers)]


# -- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--worker-class", default="gevent", choices=WORKER_CLASSES)
    parser.add_argument(
        "--keep-alive", type=int, default=WEB_KEEPALIVE_SECONDS, help="gunicorn keep-alive, s"
    )
    parser.add_argument(
        "--compare",
        choices=WORKER_CLASSES,
        help="also serve both apps under this worker class, loaded in the same rounds",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="send Connection: close, so every request connects (as nginx does to gunicorn)",
    )
    parser.add_argument(
        "--redis-fsync",
        default="always",
        choices=("always", "everysec"),
        help="appendfsync for the bench's redis-server (the embedded one ships with always)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help=(
            "send this many requests a second on a fixed schedule (open loop) instead of as"
            " fast as answers come back; latency then counts from when a request was due"
        ),
    )
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument("--slice", type=float, default=1.0, help="seconds measured per slice")
    parser.add_argument(
        "--slice-warmup",
        type=float,
        default=0.25,
        help="seconds of unmeasured load at the start of each slice",
    )
    return parser.parse_args(argv)


@dataclass
class SetUp:
    """The bare app and the helpline served under one gunicorn config, and their endpoints."""

    config: GunicornConfig
    bare_server: Server
    equal_server: Server
    app_server: Server
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def servers(self) -> list[Server]:
        """Every gunicorn of this set-up."""
        return [self.bare_server, self.equal_server, self.app_server]

    @property
    def bare(self) -> Endpoint:
        """The bare app's endpoint, the baseline of this set-up's ratios."""
        return self.endpoints[0]


def gunicorn_config(worker_class: str, args: argparse.Namespace) -> GunicornConfig:
    """Return the config to serve both apps with under worker_class."""
    # gunicorn turns sync into gthread when threads > 1, so sync always gets one thread.
    threads = 1 if worker_class == "sync" else args.threads
    return GunicornConfig(worker_class, args.workers, threads, args.keep_alive)


def start_set_up(config: GunicornConfig, env: dict[str, str], tmp: Path, tag: str) -> SetUp:
    """Start the bare app, the equal-work app and the helpline under config."""
    bare_server = start_gunicorn(
        f"bare{tag}", ["--pythonpath", str(BENCH_DIR), "bare_app:create_app()"], config, env, tmp
    )
    equal_server = start_gunicorn(
        f"equal{tag}",
        ["--pythonpath", str(BENCH_DIR), "equal_work_app:create_app()"],
        config,
        env,
        tmp,
    )
    app_server = start_gunicorn(f"helpline{tag}", ["helpline:create_app()"], config, env, tmp)
    return SetUp(config, bare_server, equal_server, app_server)


def prepare_endpoints(
    set_up: SetUp, args: argparse.Namespace, first_sms: int, redis_pids: Callable[[], list[int]]
) -> None:
    """Build the signed request pools, check each app answers, and list the endpoints."""
    bare_server, equal_server, app_server = set_up.servers
    # Enough distinct texts that no MessageSid repeats.
    sms_seconds = (args.rounds + 1) * (args.slice + args.slice_warmup)
    sms_count = max(1000, int(MAX_RATE * sms_seconds))
    sms_pool = sms_requests(app_server.port, sms_count, first_sms)
    equal_sms_pool = sms_requests(equal_server.port, sms_count, first_sms)
    bare_pool = voice_requests(bare_server.port, "/twilio/voice", 1000)
    equal_voice_pool = voice_requests(equal_server.port, "/twilio/voice", 1000)
    equal_step_pool = voice_requests(equal_server.port, STEP_PATH, 1000, Digits="1")
    voice_pool = voice_requests(app_server.port, "/twilio/voice", 1000)
    step_pool = voice_requests(app_server.port, STEP_PATH, 1000, Digits="1")
    pools = [
        bare_pool,
        equal_voice_pool,
        equal_step_pool,
        equal_sms_pool,
        voice_pool,
        step_pool,
        sms_pool,
    ]
    if args.new_connections:
        pools = [
            [r.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1) for r in pool]
            for pool in pools
        ]
    (
        bare_pool,
        equal_voice_pool,
        equal_step_pool,
        equal_sms_pool,
        voice_pool,
        step_pool,
        sms_pool,
    ) = pools

    for server in set_up.servers:
        wait_until_ready(server)
    check_answer(bare_server.port, bare_pool[0], b"<Response>", "bare app")
    check_answer(equal_server.port, equal_voice_pool[0], b"<Say", "equal-work voice")
    check_answer(equal_server.port, equal_step_pool[0], b"<Say", "equal-work step")
    check_answer(equal_server.port, equal_sms_pool[0], b"<Message>", "equal-work sms")
    check_answer(app_server.port, voice_pool[0], b"<Gather", "/twilio/voice")
    check_answer(app_server.port, step_pool[0], b"<Gather", "/twilio/voice/step")
    probe = dict(sms_form(0), MessageSid=f"SM{first_sms:x}" + "f" * 24, Body="menu")
    probe_request = signed_request(
        RequestValidator(AUTH_TOKEN), app_server.port, "/twilio/sms", probe
    )
    check_answer(app_server.port, probe_request, b"<Message>", "/twilio/sms")

    def app_pids() -> list[int]:
        return app_server.worker_pids() + redis_pids()

    def equal_pids() -> list[int]:
        return equal_server.worker_pids() + redis_pids()

    bare = Endpoint("bare Flask, fixed TwiML", bare_server.port, bare_pool, bare_server.worker_pids)
    equal_voice = Endpoint(
        "equal-work voice: signature, call count",
        equal_server.port,
        equal_voice_pool,
        equal_pids,
        redis_pids,
    )
    equal_step = Endpoint(
        "equal-work step: signature", equal_server.port, equal_step_pool, equal_pids, redis_pids
    )
    equal_sms = Endpoint(
        "equal-work sms: signature, read, SET",
        equal_server.port,
        equal_sms_pool,
        equal_pids,
        redis_pids,
    )
    set_up.endpoints = [
        bare,
        equal_voice,
        equal_step,
        equal_sms,
        Endpoint(
            "POST /twilio/voice", app_server.port, voice_pool, app_pids, redis_pids, equal_voice
        ),
        Endpoint(
            "POST /twilio/voice/step Digits=1",
            app_server.port,
            step_pool,
            app_pids,
            redis_pids,
            equal_step,
        ),
        Endpoint(
            "POST /twilio/sms SAFE/1/menu",
            app_server.port,
            sms_pool,
            app_pids,
            redis_pids,
            equal_sms,
        ),
    ]


def print_comparison(set_ups: list[SetUp]) -> None:
    """Print each helpline endpoint's ratio to its own bare app, set-up against set-up."""
    first, second = set_ups
    print()
    print(f"vs bare, {first.config.describe()} / {second.config.describe()} (same rounds):")
    for mine, theirs in zip(first.endpoints[1:], second.endpoints[1:], strict=True):
        ours = mine.throughput / first.bare.throughput if first.bare.throughput else 0.0
        base = theirs.throughput / second.bare.throughput if second.bare.throughput else 0.0
        change = f"{(ours / base - 1) * 100:+.0f} %" if base else "-"
        print(
            f"  {mine.name:<36} {ours:.2f} / {base:.2f} ({change}); req/s "
            f"{mine.throughput:.0f} / {theirs.throughput:.0f}; p99 ms "
            f"{mine.percentile_ms(99):.1f} / {theirs.percentile_ms(99):.1f}; us/req "
            f"{mine.cpu_per_request_us('server'):.0f} / {theirs.cpu_per_request_us('server'):.0f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Start redis and the gunicorns, load the endpoints in interleaved rounds, print figures."""
    args = parse_args(argv)
    configs = [gunicorn_config(args.worker_class, args)]
    if args.compare:
        configs.append(gunicorn_config(args.compare, args))

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="helpline-bench-"))
    servers: list[Server] = []
    redis_started = False
    try:
        redis_url, redis_started = embedded.ensure_running(tmp)
        client = redis.Redis.from_url(redis_url)
        client.config_set("appendfsync", args.redis_fsync)
        client.close()
        env = helpline_env(tmp, redis_url)
        set_ups = []
        for number, config in enumerate(configs):
            set_up = start_set_up(config, env, tmp, f"-{number}" if number else "")
            servers += set_up.servers
            set_ups.append(set_up)
        redis_pid: int | None = None

        def redis_pids() -> list[int]:
            return [redis_pid] if redis_pid else []

        for number, set_up in enumerate(set_ups):
            # Each set-up texts with its own MessageSids: they share one Redis.
            prepare_endpoints(set_up, args, number * 10_000_000, redis_pids)
        redis_pid = embedded.server_pid(tmp)

        endpoints = [endpoint for set_up in set_ups for endpoint in set_up.endpoints]
        described = " and ".join(config.describe() for config in configs)
        print(f"gunicorn {described} ready; warming up, then {args.rounds} rounds", flush=True)
        for endpoint in endpoints:
            load_slice(endpoint, args.connections, args.slice_warmup, args.slice, args.rate)
        for number in range(args.rounds):
            order = endpoints[number % len(endpoints) :] + endpoints[: number % len(endpoints)]
            for endpoint in order:
                endpoint.samples.append(
                    load_slice(endpoint, args.connections, args.slice_warmup, args.slice, args.rate)
                )
            print(f"  round {number + 1}/{args.rounds} done", flush=True)
        for set_up in set_ups:
            print_report(set_up.endpoints, set_up.bare, set_up.config, args)
        if len(set_ups) > 1:
            print_comparison(set_ups)
        print()

        client = redis.Redis.from_url(redis_url)
        conversations = sum(1 for _ in client.scan_iter("helpline:sms:conv:*", count=1000))
        client.close()
        print(
            f"redis: {conversations} SMS conversations stored (texts came from "
            f"{len(CALLERS)} numbers)"
        )
        for server in servers:
            problems = log_problems(server)
            print(f"{server.name} gunicorn log: {len(problems)} warning/error lines")
            for line in problems[:5]:
                print(f"  {line[:200]}")
        print(f"bench took {time.monotonic() - began:.1f} s")
        return 1 if any(endpoint.errors for endpoint in endpoints) else 0
    finally:
        for server in servers:
            stop_server(server)
        if redis_started:
            embedded.stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
