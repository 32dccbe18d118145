"""A TV-advert burst: new contacts every second against `helpline web` and its workers.

Run: .venv/bin/python bench/burst.py   (or: make bench-burst; try --seconds 5 --rate 20)

On this machine it starts the embedded redis-server (AOF, `appendfsync always`), the
loopback stand-in of Twilio's REST API (tests/twilio_api.py, in its own process),
`helpline web` (gunicorn, as the Procfile runs it) and `helpline worker --processes 2`.
Then, open loop, --rate new contacts a second arrive for --seconds, each from its own
number, each one of:

  call       the voice webhook, then a step of the menu (Digits=1)
  text       a text ("menu"), then a choice ("1")
  call back  the TALK flow by text to the end (TALK, 2, 1, 1, 1): the request is queued
             and a worker texts its confirmation through the stand-in

A contact's first request is due when the contact arrives; each next one --think
seconds after the previous answer, as a person replies. Every request is a new
connection signed as Twilio signs it, and its latency counts from when it was due, so
waiting behind a busy server counts. Before that, in the same run, the same kind of
burst (--baseline-seconds long) goes to the equal-work app (bench/equal_work_app.py:
signature check, the same Redis read and write for a text, fixed TwiML) under the same
gunicorn settings, for a baseline of CPU per contact.

It prints webhook latency p50/p99, errors (must be 0), confirmation texts the stand-in
received and their delay from the request that queued them, the server processes'
CPU seconds per contact (web, workers, redis-server), and the sizing rule they imply.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from types import FrameType

import redis
from slow_clients import spawn
from twilio.request_validator import RequestValidator
from webhooks import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BENCH_DIR,
    HELPLINE_NUMBER,
    HOST,
    ROOT,
    STEP_PATH,
    GunicornConfig,
    Server,
    cpu_seconds,
    free_port,
    helpline_env,
    machine_busy_seconds,
    own_cpu_seconds,
    signed_request,
    start_gunicorn,
    stop_process,
    stop_server,
    wait_until_ready,
)

sys.path.insert(0, str(ROOT))  # the stand-in lives with the tests

from helpline.infrastructure import embedded  # noqa: E402
from helpline.infrastructure.constants import WEB_KEEPALIVE_SECONDS  # noqa: E402
from tests.twilio_api import TwilioApi  # noqa: E402

# Twilio gives up on a webhook after 15 s: a request not answered by then is an error.
TWILIO_LIMIT = 15.0
BOOT_SECONDS = 60.0
# The share of a core to plan for, leaving room for bursts above the one measured.
PLANNED_BUSY = 0.6
KINDS = ("call", "text", "callback")
# Ofcom's numbers for drama (0113 496 0000-0999 and so on): valid, never a subscriber's.
# A call back needs a number that parses as a full phone number.
NUMBER_BLOCKS = tuple(
    f"+44{block}"
    for block in (
        "1134960", "1144960", "1164960", "1174960", "1184960", "1214960", "1314960",
        "1414960", "1514960", "1614960", "1914980", "2079460", "2920180",
    )
)  # fmt: skip
NUMBERS = len(NUMBER_BLOCKS) * 1000
WARM_UP_FIRST = NUMBERS - 10
ON_THE_LIST = b"on the list"


@dataclass(frozen=True)
class Step:
    """One webhook of a contact: where, what, and a piece of the answer that shows it worked."""

    route: str
    path: str
    form: dict[str, str]
    expect: bytes


@dataclass
class Result:
    """What one request did."""

    route: str
    latency: float  # seconds, from when it was due to the whole answer
    status: int  # 0: no answer within TWILIO_LIMIT
    expected: bool
    wrong: bytes = b""  # the start of an answer that did not say what it should


@dataclass
class Load:
    """Everything the load generator saw in one burst."""

    results: list[Result] = field(default_factory=list)
    # The number of each call back contact and when its last text (the one that queues
    # the confirmation) was due, as time.time().
    queued_at: dict[str, float] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    finished: float = 0.0  # time.monotonic() when the last contact was done


# -- contacts ---------------------------------------------------------------------------


def number(n: int) -> str:
    """Return the n-th number of the drama ranges (they repeat after NUMBERS)."""
    return f"{NUMBER_BLOCKS[n // 1000 % len(NUMBER_BLOCKS)]}{n % 1000:03d}"


def call_steps(n: int, number: str) -> list[Step]:
    """A new call: the voice webhook, then the first menu choice."""
    form = {
        "CallSid": f"CA{n:032x}",
        "AccountSid": ACCOUNT_SID,
        "From": number,
        "To": HELPLINE_NUMBER,
        "CallStatus": "in-progress",
        "Direction": "inbound",
    }
    return [
        Step("/twilio/voice", "/twilio/voice", form, b"<Gather"),
        Step("/twilio/voice/step", STEP_PATH, dict(form, Digits="1"), b"<Gather"),
    ]


def text_steps(n: int, number: str, bodies: Sequence[str], last: bytes) -> list[Step]:
    """A text conversation: one webhook per body, each a new MessageSid."""
    steps = []
    for i, body in enumerate(bodies):
        form = {
            "MessageSid": f"SM{n:028x}{i:04x}",
            "AccountSid": ACCOUNT_SID,
            "From": number,
            "To": HELPLINE_NUMBER,
            "Body": body,
            "NumMedia": "0",
        }
        expect = last if i == len(bodies) - 1 else b"<Message>"
        steps.append(Step("/twilio/sms", "/twilio/sms", form, expect))
    return steps


def contact_steps(kind: str, n: int, number: str) -> list[Step]:
    """Return the webhooks contact n of this kind sends, in order."""
    if kind == "call":
        return call_steps(n, number)
    if kind == "text":
        return text_steps(n, number, ("menu", "1"), b"<Message>")
    # Not at risk right now, no recent break from using; call this other number (calling
    # back the texter's own, the reply says where they stand and no text is queued);
    # voicemail and texts are fine.
    bodies = ("TALK", "2", "2", callback_number(n), "1", "1")
    return text_steps(n, number, bodies, ON_THE_LIST)


def callback_number(n: int) -> str:
    """Return the number contact n asks to be called back on (and texted at)."""
    return number(n + NUMBERS // 2)


def parse_mix(text: str) -> dict[str, float]:
    """Read 'call=4,text=3,callback=3' into weights."""
    weights = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown kind {name!r}: use {', '.join(KINDS)}")
        weights[name.strip()] = float(weight)
    return weights


# -- the load generator -----------------------------------------------------------------


async def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send one request on a new connection; return (status, body), status 0 on failure."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request)
        data = await reader.read(-1)  # Connection: close: the answer ends with the stream
    except OSError:
        return 0, b""
    finally:
        if writer is not None:
            writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


async def run_contact(
    port: int,
    validator: RequestValidator,
    steps: list[Step],
    due: float,
    think: float,
    check: bool,
    load: Load,
) -> None:
    """Send a contact's webhooks, the first at due (monotonic), each next think s after.

    For a call back request, the number to call and when the text that put it on the
    list was due go in load.queued_at.
    """
    clock_offset = time.time() - time.monotonic()
    confirm_to = steps[3].form["Body"] if steps[-1].expect == ON_THE_LIST else None
    for step in steps:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        request = signed_request(validator, port, step.path, step.form)
        request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        try:
            status, body = await asyncio.wait_for(exchange(port, request), TWILIO_LIMIT)
        except TimeoutError:
            status, body = 0, b""
        answered = time.monotonic()
        expected = status == 200 and (not check or step.expect in body)
        if confirm_to and ON_THE_LIST in body:
            load.queued_at[confirm_to] = due + clock_offset
        wrong = b"" if expected else body[:300]
        load.results.append(Result(step.route, answered - due, status, expected, wrong))
        if status != 200:
            return  # Twilio would have hung up, or the texter got no reply
        due = answered + think


def schedule(args: argparse.Namespace, seconds: float, seed: int) -> list[str]:
    """Return the kinds of the contacts of a burst of `seconds`, drawn from the mix."""
    weights = parse_mix(args.mix)
    chooser = random.Random(seed)
    return chooser.choices(
        list(weights), weights=list(weights.values()), k=int(args.rate * seconds)
    )


async def burst(
    port: int, args: argparse.Namespace, kinds: list[str], first: int, check: bool
) -> Load:
    """Start the contacts, args.rate a second on schedule; wait until they are all done."""
    validator = RequestValidator(AUTH_TOKEN)
    load = Load()
    tasks = []
    start = time.monotonic() + 0.1
    for i, kind in enumerate(kinds):
        due = start + i / args.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        load.contacts[kind] += 1
        n = first + i
        steps = contact_steps(kind, n, number(n))
        tasks.append(
            asyncio.create_task(run_contact(port, validator, steps, due, args.think, check, load))
        )
    await asyncio.gather(*tasks)
    load.finished = time.monotonic()
    return load


# -- processes --------------------------------------------------------------------------


def stand_in(pipe: Pipe) -> None:
    """Serve Twilio's REST API; answer 'count', 'refused' and 'messages' until 'stop'."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with TwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
        pipe.send(api.url)
        while (question := pipe.recv()) != "stop":
            if question == "count":
                pipe.send(len(api.messages()))
            elif question == "refused":
                pipe.send(
                    [(r.kind, r.status, r.response) for r in api.received() if not r.accepted]
                )
            else:
                pipe.send([(m.form.get("To", ""), m.at) for m in api.messages()])


def descendants(pid: int) -> list[int]:
    """Return pid and every process below it, from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    return found


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop()."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[int, float] = {}
        self.used: dict[str, float] = dict.fromkeys(groups, 0.0)
        self.machine = 0.0
        self.client = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        return {
            name: {pid: cpu_seconds([pid]) for pid in pids()} for name, pids in self.groups.items()
        }

    def start(self) -> None:
        self.before = {pid: cpu for group in self._read().values() for pid, cpu in group.items()}
        self.machine, self.client = -machine_busy_seconds(), -own_cpu_seconds()

    def stop(self) -> None:
        for name, group in self._read().items():
            self.used[name] = sum(cpu - self.before.get(pid, 0.0) for pid, cpu in group.items())
        self.machine += machine_busy_seconds()
        self.client += own_cpu_seconds()


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    """Block until something accepts on port; fail if the process exits first."""
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port} within {BOOT_SECONDS:.0f} s")


def log_tail(path: Path, lines: int = 20) -> str:
    """Return the last lines of a log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def log_problems(path: Path, lines: int = 20) -> str:
    """Return the last warning and error lines of a log."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    markers = ('"level": "error"', '"level": "warning"', "Traceback", "Error")
    return "\n".join([line for line in text if any(m in line for m in markers)][-lines:])


def ask_stand_in(pipe: Pipe, question: str):  # noqa: ANN201 - answers vary by question
    pipe.send(question)
    return pipe.recv()


def wait_for_texts(pipe: Pipe, count: int, timeout: float) -> int:
    """Wait until the stand-in holds count texts or timeout passes; return how many it holds."""
    deadline = time.monotonic() + timeout
    while (held := ask_stand_in(pipe, "count")) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return int(held)


# -- report -----------------------------------------------------------------------------


def quantile_ms(values: Sequence[float], q: float) -> str:
    """Return the q-quantile of seconds values, in ms, as text."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0] * 1000:.0f}"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"{cuts[int(q * 100) - 1] * 1000:.0f}"


def contacts_of(load: Load) -> int:
    return sum(load.contacts.values())


def print_latency(load: Load) -> int:
    """Print latency and errors by route; return the errors."""
    routes = ("/twilio/voice", "/twilio/voice/step", "/twilio/sms")
    print(f"\n{'webhook':<22}{'requests':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'errors':>8}")
    errors = 0
    for route in (*routes, "all"):
        mine = [r for r in load.results if route in ("all", r.route)]
        latencies = [r.latency for r in mine]
        failed = sum(1 for r in mine if not r.expected)
        if route != "all":
            errors += failed
        top = f"{max(latencies) * 1000:.0f}" if latencies else "-"
        print(
            f"{route:<22}{len(mine):>9}{quantile_ms(latencies, 0.5):>8}"
            f"{quantile_ms(latencies, 0.99):>8}{top:>8}{failed:>8}"
        )
    print(
        "latency: from when the request was due to its whole answer, on a new connection; "
        "errors: no 200 within 15 s, or an answer without what it should say"
    )
    for result in [r for r in load.results if not r.expected][:3]:
        print(f"  e.g. {result.route}: {result.status} {result.wrong[:200]!r}")
    return errors


def print_report(
    load: Load,
    meter: CpuMeter,
    baseline: tuple[Load, CpuMeter] | None,
    texts: list[tuple[str, float]],
    args: argparse.Namespace,
    measured: float,
) -> int:
    """Print the figures; return the number of problems (errors, missing texts)."""
    contacts = contacts_of(load)
    cores = os.cpu_count() or 1
    mix = ", ".join(f"{load.contacts[k]} {k}" for k in KINDS)
    print(f"\n{contacts} contacts ({mix}) in {args.seconds:g} s, {len(load.results)} webhooks")
    problems = print_latency(load)

    delays: list[float] = []
    per_number: dict[str, int] = {}
    for to, at in texts:
        if to in load.queued_at:
            per_number[to] = per_number.get(to, 0) + 1
            delays.append(at - load.queued_at[to])
    expected = len(load.queued_at)
    missing = expected - len(per_number)
    repeated = sum(n - 1 for n in per_number.values())
    problems += missing + repeated
    print(
        f"\nconfirmation texts handed to the stand-in: {len(per_number)} of {expected} "
        f"({missing} missing, {repeated} repeated); delay from the request that queued "
        f"them: p50 {quantile_ms(delays, 0.5)} ms, p99 {quantile_ms(delays, 0.99)} ms, "
        f"max {f'{max(delays) * 1000:.0f}' if delays else '-'} ms"
    )

    total = sum(meter.used.values())
    per_contact = total / contacts if contacts else 0.0
    parts = ", ".join(
        f"{name} {meter.used[name] / contacts * 1000:.1f}" for name in meter.used if contacts
    )
    print(
        f"\nCPU over {measured:.1f} s: server processes {total:.1f} s "
        f"({total / measured if measured else 0:.2f} cores on average) = "
        f"{per_contact * 1000:.1f} ms a contact ({parts} ms); the load generator "
        f"{meter.client:.1f} s; the whole machine {meter.machine:.1f} s of {cores} cores x "
        f"{measured:.1f} s"
    )
    if baseline is not None:
        base_load, base_meter = baseline
        base_contacts = contacts_of(base_load)
        base_total = sum(base_meter.used.values())
        base_per = base_total / base_contacts if base_contacts else 0.0
        web = meter.used["web"] + meter.used["redis"]
        web_per = web / contacts if contacts else 0.0
        print(
            f"equal-work baseline, same run ({base_contacts} contacts in "
            f"{args.baseline_seconds:g} s): {base_per * 1000:.1f} ms a contact (gunicorn + "
            f"redis-server; p99 {quantile_ms([r.latency for r in base_load.results], 0.99)} ms, "
            f"{sum(1 for r in base_load.results if r.status != 200)} errors)"
        )
        if base_per:
            print(
                f"  helpline web + redis-server: {web_per * 1000:.1f} ms a contact, "
                f"{web_per / base_per:.2f} x the baseline's; with the workers: "
                f"{per_contact / base_per:.2f} x"
            )
    other = meter.machine - total - meter.client
    if measured and other / measured > 0.25:
        print(
            f"Note: other processes on the machine used {other / measured:.2f} cores on "
            "average during the burst; the figures are from a busy machine."
        )
    if per_contact:
        per_core = 1 / per_contact
        print(
            f"\nsizing: one core serves about {per_core:.0f} contacts a second of this mix "
            f"at 100 % busy; at {PLANNED_BUSY:.0%} busy, plan "
            f"{per_contact / PLANNED_BUSY * 1000:.1f} ms of CPU a contact: cores = contacts a "
            f"second x {per_contact / PLANNED_BUSY:.3f} (this burst of {args.rate:g}/s: "
            f"{args.rate * per_contact / PLANNED_BUSY:.1f} cores)"
        )
    print(
        f"goal (errors 0, every confirmation handed over once): "
        f"{'met' if not problems else f'NOT met ({problems} problems)'}"
    )
    return problems


# -- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="new contacts a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the burst")
    parser.add_argument(
        "--mix", default="call=4,text=3,callback=3", help="weights of call, text and callback"
    )
    parser.add_argument(
        "--think", type=float, default=1.0, help="seconds a contact takes to answer each reply"
    )
    parser.add_argument("--web-workers", type=int, default=2, help="WEB_CONCURRENCY")
    parser.add_argument("--worker-processes", type=int, default=2, help="helpline worker")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=10.0,
        help="length of the equal-work baseline burst (0: none)",
    )
    parser.add_argument(
        "--grace", type=float, default=60.0, help="seconds to wait for confirmations after"
    )
    args = parser.parse_args(argv)
    parse_mix(args.mix)
    if args.rate * args.seconds > NUMBERS // 2:
        print(
            f"Note: more than {NUMBERS // 2} contacts: numbers repeat, and a repeated call "
            "back request is not new (it gets no second confirmation)"
        )
    return args


def run_baseline(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, redis_pid: Callable[[], list[int]]
) -> tuple[Load, CpuMeter]:
    """The same kind of burst against the equal-work app under the same gunicorn settings."""
    config = GunicornConfig("gevent", args.web_workers, 1, WEB_KEEPALIVE_SECONDS)
    server: Server = start_gunicorn(
        "equal", ["--pythonpath", str(BENCH_DIR), "equal_work_app:create_app()"], config, env, tmp
    )
    try:
        wait_until_ready(server)
        meter = CpuMeter({"web": lambda: descendants(server.process.pid), "redis": redis_pid})
        meter.start()
        kinds = schedule(args, args.baseline_seconds, 1)
        load = asyncio.run(burst(server.port, args, kinds, 0, False))
        meter.stop()
        return load, meter
    finally:
        stop_server(server)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="helpline-burst-"))
    processes: list[subprocess.Popen[bytes]] = []
    context = multiprocessing.get_context("fork")
    pipe, child_pipe = context.Pipe()
    twilio = context.Process(target=stand_in, args=(child_pipe,), daemon=True)
    redis_started = False
    try:
        redis_url, redis_started = embedded.ensure_running(tmp)
        client = redis.Redis.from_url(redis_url)
        fsync = client.config_get("appendfsync")["appendfsync"]
        client.close()
        redis_pid = embedded.server_pid(tmp)

        def redis_pids() -> list[int]:
            return [redis_pid] if redis_pid else []

        twilio.start()
        api_url = pipe.recv()
        port = free_port()
        env = dict(
            helpline_env(tmp, redis_url),
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_API_URL=api_url,
            HELPLINE_PHONE_NUMBER=HELPLINE_NUMBER,
            WEB_CONCURRENCY=str(args.web_workers),
            PORT=str(port),
        )
        print(
            f"burst: {args.rate:g} new contacts a second for {args.seconds:g} s (mix "
            f"{args.mix}, {args.think:g} s to answer each reply); redis-server appendfsync "
            f"{fsync}; `helpline web` ({args.web_workers} gevent workers) and `helpline worker "
            f"--processes {args.worker_processes}`; {os.cpu_count()} cores, shared with the "
            f"load generator and the stand-in; load average before: "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
            flush=True,
        )
        baseline = None
        if args.baseline_seconds > 0:
            baseline = run_baseline(args, env, tmp, redis_pids)
            print(f"  equal-work baseline done ({contacts_of(baseline[0])} contacts)", flush=True)

        python = sys.executable
        web = spawn([python, "-m", "helpline", "web"], env, tmp, "web")
        processes.append(web)
        worker = spawn(
            [python, "-m", "helpline", "worker", "--processes", str(args.worker_processes)],
            env,
            tmp,
            "worker",
        )
        processes.append(worker)
        wait_for_port(port, web, "helpline web")
        # Warm up: a few contacts of each kind, and the workers hand over a confirmation.
        warm = asyncio.run(burst(port, args, list(KINDS) * 3, WARM_UP_FIRST, True))
        if any(not r.expected for r in warm.results):
            wrong = [r for r in warm.results if not r.expected]
            raise RuntimeError(f"warm-up failed: {wrong}\n{log_tail(tmp / 'web.log')}")
        if wait_for_texts(pipe, len(warm.queued_at), BOOT_SECONDS) < len(warm.queued_at):
            raise RuntimeError(
                f"no confirmation was sent: {warm.queued_at}, refused by the stand-in: "
                f"{ask_stand_in(pipe, 'refused')[:3]}\n{log_problems(tmp / 'worker.log')}"
            )
        print("  helpline web and workers ready; the burst begins", flush=True)

        meter = CpuMeter(
            {
                "web": lambda: descendants(web.pid),
                "workers": lambda: descendants(worker.pid),
                "redis": redis_pids,
            }
        )
        meter.start()
        started = time.monotonic()
        load = asyncio.run(burst(port, args, schedule(args, args.seconds, 0), 0, True))
        print(
            f"  contacts done {load.finished - started:.1f} s after the start; waiting for "
            "confirmations",
            flush=True,
        )
        held_before = len(warm.queued_at)
        wait_for_texts(pipe, held_before + len(load.queued_at), args.grace)
        meter.stop()
        measured = time.monotonic() - started
        texts = ask_stand_in(pipe, "messages")
        problems = print_report(load, meter, baseline, texts, args, measured)
        print(f"bench took {time.monotonic() - began:.0f} s")
        return 1 if problems else 0
    finally:
        for process in processes:
            stop_process(process, grace=10)
        if twilio.is_alive():
            pipe.send("stop")
            twilio.join(timeout=10)
        if redis_started:
            embedded.stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
