"""Measure signed webhooks while slow clients trickle requests at the web process.

Run: .venv/bin/python bench/slow_clients.py   (make bench-slow)

For each number of slow connections (default 10, then 50) it starts, in turn and in
alternating order, the old set-up (gunicorn sync workers, as the Procfile ran them) and
`helpline web` as it runs now, both on 127.0.0.1 with one embedded Redis, and, when nginx
is installed, nginx with deploy/nginx/helpline-proxy.conf in front of the old set-up.
Each slow connection sends one byte every --interval seconds: half trickle the request
head, half send a signed head at once and trickle the body. One that the server closes
is replaced at once, as an attacker would. Meanwhile probe threads send signed voice and
SMS webhooks, each on a fresh connection, and time them. Everything is bounded: each
scenario lasts --seconds, and a probe gives up after PROBE_TIMEOUT seconds.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from twilio.request_validator import RequestValidator
from webhooks import (
    AUTH_TOKEN,
    HOST,
    ROOT,
    Connection,
    call_form,
    free_port,
    helpline_env,
    signed_request,
    sms_form,
    stop_process,
)

from helpline.infrastructure import embedded

# Twilio drops a webhook that has not answered in 15 s.
TWILIO_LIMIT = 15.0
# A probe waits this long for its answer, then counts as lost.
PROBE_TIMEOUT = 20.0
BOOT_SECONDS = 60.0
NGINX_SITE = ROOT / "deploy" / "nginx" / "helpline.conf"
NGINX_SNIPPET = ROOT / "deploy" / "nginx" / "helpline-proxy.conf"
# The old Procfile line, the baseline: sync workers read each request themselves.
SYNC_COMMAND = (
    "-m",
    "gunicorn",
    "--worker-class",
    "sync",
    "--workers",
    "2",
    "--graceful-timeout",
    "20",
    "helpline:create_app()",
)


# -- slow clients -----------------------------------------------------------------------


def slow_head(port: int) -> bytes:
    """Return a request whose head alone is trickled: the server never sees it end."""
    return (
        f"POST /twilio/voice HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "X-Twilio-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
        "Content-Length: 4096\r\n\r\n"
    ).encode() + b"A" * 4096


@dataclass
class SlowConnection:
    """One connection trickling a request a byte at a time."""

    sock: socket.socket
    payload: bytes
    opened: float
    sent: int = 0


@dataclass
class Trickle:
    """Keep `count` slow connections open against a port, replacing each one closed."""

    port: int
    count: int
    interval: float
    opened: int = 0
    lifetimes: list[float] = field(default_factory=list)
    open_at_end: list[float] = field(default_factory=list)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the connections and trickle from a background thread."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop trickling and close whatever is still open."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _open(self, index: int) -> SlowConnection | None:
        try:
            sock = socket.create_connection((HOST, self.port), timeout=2)
        except OSError:
            self.refused += 1
            return None
        sock.setblocking(False)
        self.opened += 1
        head = slow_head(self.port)
        if index % 2:
            # The head at once, signature and all, then the body a byte at a time.
            split = head.index(b"\r\n\r\n") + 4
            _send_all(sock, head[:split])
            return SlowConnection(sock, head, time.monotonic(), sent=split)
        return SlowConnection(sock, head, time.monotonic())

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        slots: dict[int, SlowConnection] = {}

        def add(index: int) -> None:
            conn = self._open(index)
            if conn is not None:
                slots[index] = conn
                selector.register(conn.sock, selectors.EVENT_READ, index)

        def drop(index: int, closed_by_server: bool) -> None:
            conn = slots.pop(index)
            selector.unregister(conn.sock)
            conn.sock.close()
            if closed_by_server:
                self.lifetimes.append(time.monotonic() - conn.opened)

        for index in range(self.count):
            add(index)
        # Each connection sends its next byte at its own phase of the interval.
        tick = self.interval / max(1, self.count)
        next_byte = {i: time.monotonic() + i * tick for i in range(self.count)}
        while not self._stop.is_set():
            now = time.monotonic()
            for index in range(self.count):
                if index not in slots:
                    add(index)
                    continue
                if now < next_byte[index]:
                    continue
                next_byte[index] = now + self.interval
                conn = slots[index]
                try:
                    conn.sock.send(conn.payload[conn.sent : conn.sent + 1])
                    conn.sent = min(conn.sent + 1, len(conn.payload) - 1)
                except OSError:
                    drop(index, closed_by_server=True)
            for key, _ in selector.select(timeout=min(0.05, tick)):
                index = key.data
                try:
                    data = slots[index].sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    drop(index, closed_by_server=True)
                # Anything else (a 408) is read and ignored; the close follows.
        now = time.monotonic()
        for index in list(slots):
            self.open_at_end.append(now - slots[index].opened)
            drop(index, closed_by_server=False)
        selector.close()


def _send_all(sock: socket.socket, data: bytes) -> None:
    sock.setblocking(True)
    try:
        sock.sendall(data)
    finally:
        sock.setblocking(False)


# -- probes -----------------------------------------------------------------------------


@dataclass
class Probes:
    """Signed voice and SMS webhooks, each on a fresh connection, timed."""

    port: int
    first_sid: int
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    errors: int = 0

    def run(self, threads: int, seconds: float, pause: float) -> None:
        """Send from `threads` threads for `seconds`, each pausing `pause` between requests."""
        validator = RequestValidator(AUTH_TOKEN)
        numbers = itertools.count(self.first_sid)
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds

        def probe() -> None:
            while time.monotonic() < stop_at:
                number = next(numbers)
                if number % 2:
                    request = signed_request(validator, self.port, "/twilio/sms", sms_form(number))
                else:
                    form = call_form(number)
                    request = signed_request(validator, self.port, "/twilio/voice", form)
                began = time.monotonic()
                status, body = exchange_once(self.port, request)
                took = time.monotonic() - began
                with lock:
                    if status == 0:
                        self.lost += 1
                        self.latencies.append(max(took, PROBE_TIMEOUT))
                    else:
                        self.latencies.append(took)
                        if status != 200 or b"<Response>" not in body:
                            self.errors += 1
                time.sleep(pause)

        workers = [threading.Thread(target=probe, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=seconds + PROBE_TIMEOUT + 10)


def exchange_once(port: int, request: bytes) -> tuple[int, bytes]:
    """Send request on a new connection; return (status, body), status 0 if none came."""
    connection = Connection(port)
    try:
        connection.sock = socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection._exchange(request)  # once: no retry on a fresh connection
    except (OSError, ValueError):
        return 0, b""
    finally:
        connection.close()


def percentile(values: Sequence[float], q: int) -> float:
    """Return the q-th percentile of values (nan when empty)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- servers ----------------------------------------------------------------------------


@dataclass
class Running:
    """A started web set-up: the port probes use and the processes to stop."""

    name: str
    port: int
    processes: list[subprocess.Popen[bytes]]
    log_path: Path


def start_sync(env: dict[str, str], log_dir: Path) -> Running:
    """Start the old set-up: gunicorn sync workers, as the Procfile ran them."""
    port = free_port()
    command = [sys.executable, *SYNC_COMMAND[:2], "--bind", f"{HOST}:{port}", *SYNC_COMMAND[2:]]
    return Running(
        "gunicorn sync x2 (before)",
        port,
        [spawn(command, env, log_dir, "sync")],
        log_dir / "sync.log",
    )


def start_web(env: dict[str, str], log_dir: Path) -> Running:
    """Start `helpline web` as it runs now."""
    port = free_port()
    command = [sys.executable, "-m", "helpline", "web", "--host", HOST, "--port", str(port)]
    return Running(
        "helpline web (after)", port, [spawn(command, env, log_dir, "web")], log_dir / "web.log"
    )


def start_nginx(inner: Running, log_dir: Path) -> Running:
    """Start nginx with the deploy/ snippet in front of a started set-up."""
    port = free_port()
    nginx_dir = log_dir / f"nginx-{port}"
    nginx_dir.mkdir()
    conf = nginx_dir / "nginx.conf"
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {nginx_dir}/nginx.pid;\n"
        f"error_log {nginx_dir}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {nginx_dir}/body;\n  proxy_temp_path {nginx_dir}/proxy;\n"
        f"  fastcgi_temp_path {nginx_dir}/fcgi;\n  uwsgi_temp_path {nginx_dir}/uwsgi;\n"
        f"  scgi_temp_path {nginx_dir}/scgi;\n"
        f"  {upstream_block(inner.port)}\n"
        f"  server {{\n    listen {HOST}:{port};\n    include {NGINX_SNIPPET};\n  }}\n"
        "}\n"
    )
    nginx = spawn([nginx_binary() or "nginx", "-c", str(conf)], {}, log_dir, "nginx")
    name = "nginx -> " + inner.name.removesuffix(" (before)").removesuffix(" (after)")
    return Running(name, port, [nginx, *inner.processes], inner.log_path)


def start_nginx_sync(env: dict[str, str], log_dir: Path) -> Running:
    """Start the old set-up behind nginx."""
    return start_nginx(start_sync(env, log_dir), log_dir)


def start_nginx_web(env: dict[str, str], log_dir: Path) -> Running:
    """Start `helpline web` behind nginx: the documented production set-up."""
    return start_nginx(start_web(env, log_dir), log_dir)


def upstream_block(port: int) -> str:
    """Return deploy/nginx/helpline.conf's upstream block, pointed at port on HOST."""
    site = NGINX_SITE.read_text()
    block = re.search(r"^upstream helpline_web \{.*?^\}", site, re.MULTILINE | re.DOTALL)
    if block is None:
        raise RuntimeError(f"no upstream helpline_web block in {NGINX_SITE}")
    return re.sub(r"server \S+;", f"server {HOST}:{port};", block.group(0), count=1)


def nginx_binary() -> str | None:
    """Return nginx's path, if it is installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


def spawn(
    command: list[str], env: dict[str, str], log_dir: Path, name: str
) -> subprocess.Popen[bytes]:
    """Start command in its own session (so it can be stopped whole), output to a log."""
    with open(log_dir / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def wait_ready(running: Running) -> None:
    """Block until /healthz answers 200 through the set-up's port; fail if a process exits."""
    deadline = time.monotonic() + BOOT_SECONDS
    url = f"http://{HOST}:{running.port}/healthz"
    while time.monotonic() < deadline:
        for process in running.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{running.name} exited; see {running.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{running.name} did not answer within {BOOT_SECONDS:.0f} s")


def stop(running: Running) -> None:
    """Stop every process of the set-up, the proxy first."""
    for process in running.processes:
        # A sync worker pinned by a slow client holds gunicorn's graceful timeout (20 s).
        stop_process(process, grace=25)


# -- scenarios --------------------------------------------------------------------------


@dataclass
class Result:
    """What one set-up did under one number of slow connections."""

    setup: str
    slow: int
    probes: Probes
    trickle: Trickle

    def row(self) -> str:
        """Return one table row."""
        values = self.probes.latencies
        over = sum(1 for v in values if v > TWILIO_LIMIT)
        lives = self.trickle.lifetimes
        cut = f"{len(lives)} ({percentile(lives, 50):.1f}/{max(lives):.1f} s)" if lives else "0"
        return (
            f"{self.setup:<28} {self.slow:>4} {len(values):>6} "
            f"{percentile(values, 50) * 1000:>8.1f} {percentile(values, 99) * 1000:>9.1f} "
            f"{max(values, default=float('nan')) * 1000:>9.1f} {over:>6} {self.probes.errors:>6}"
            f"  {self.trickle.opened:>6} {cut:>22} {len(self.trickle.open_at_end):>6}"
        )


HEADER = (
    f"{'set-up':<28} {'slow':>4} {'probes':>6} {'p50 ms':>8} {'p99 ms':>9} {'max ms':>9} "
    f"{'>15 s':>6} {'errors':>6}  {'opened':>6} {'closed (p50/max life)':>22} {'alive':>6}"
)


def run_scenario(
    start: Callable[[dict[str, str], Path], Running],
    slow: int,
    env: dict[str, str],
    log_dir: Path,
    args: argparse.Namespace,
    first_sid: int,
) -> Result:
    """Start a set-up, trickle `slow` connections at it, probe it, stop it."""
    running = start(env, log_dir)
    try:
        wait_ready(running)
        trickle = Trickle(running.port, slow, args.interval)
        trickle.start()
        # Let the slow connections arrive first, as an attack would.
        time.sleep(args.interval)
        probes = Probes(running.port, first_sid)
        probes.run(args.probe_threads, args.seconds, args.pause)
        trickle.stop()
        return Result(running.name, slow, probes, trickle)
    finally:
        stop(running)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--slow", type=int, nargs="+", default=[10, 50], help="slow connections, per scenario"
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between bytes")
    parser.add_argument("--seconds", type=float, default=20.0, help="probing time per scenario")
    parser.add_argument("--probe-threads", type=int, default=4)
    parser.add_argument(
        "--pause", type=float, default=0.1, help="seconds between a thread's probes"
    )
    parser.add_argument("--no-nginx", action="store_true", help="skip nginx even if installed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario, print the comparison."""
    args = parse_args(argv)

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="helpline-slow-"))
    redis_started = False
    setups = [start_sync, start_web]
    if not args.no_nginx and nginx_binary():
        setups += [start_nginx_sync, start_nginx_web]
    results: list[Result] = []
    try:
        redis_url, redis_started = embedded.ensure_running(tmp)
        env = helpline_env(tmp, redis_url)
        env.pop("WEB_CONCURRENCY", None)
        print(
            f"{len(args.slow)} slow-connection counts x {len(setups)} set-ups, "
            f"{args.seconds:g} s of probes each ({args.probe_threads} threads, "
            f"{args.pause:g} s apart); a byte every {args.interval:g} s per slow connection",
            flush=True,
        )
        first_sid = 0
        for number, slow in enumerate(args.slow):
            order = setups if number % 2 == 0 else setups[::-1]
            for start in order:
                result = run_scenario(start, slow, env, tmp, args, first_sid)
                first_sid += 1_000_000
                results.append(result)
                print(f"  {result.setup}, {slow} slow: done", flush=True)
        print()
        print(HEADER)
        print("-" * len(HEADER))
        for result in sorted(results, key=lambda r: (r.slow, r.setup)):
            print(result.row())
        print()
        print(
            f"probes: signed voice and SMS webhooks, each on a new connection; one not "
            f"answered within {PROBE_TIMEOUT:g} s counts as {PROBE_TIMEOUT:g} s. "
            f">15 s: answers Twilio would not have waited for (it gives up at "
            f"{TWILIO_LIMIT:g} s). opened: slow connections opened (each one the server "
            "closed was replaced); closed: how many the server closed, with the median and "
            "longest life; alive: still open when the scenario ended."
        )
        print(f"bench took {time.monotonic() - began:.0f} s")
        return 0
    finally:
        if redis_started:
            embedded.stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
