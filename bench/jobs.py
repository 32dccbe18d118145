"""Benchmark the workers: routine texts per second, and how soon an urgent alert reaches Twilio.

Against a real embedded redis-server (AOF, fsync on every write, as `helpline serve`
runs it) and the loopback stand-in of Twilio's REST API (tests/twilio_api.py), in the
same run, one worker set-up after another:

  baseline      one forking RQ worker on one FIFO queue, as the helpline ran before:
                alerts queue behind texts, and each work-horse loads the flows itself
  forking       `helpline worker --processes 1 --fork`: a work-horse per job, with the
                flows and the Twilio client loaded once, before the fork
  one-process   `helpline worker --processes 1`: jobs run in the worker process
  default       `helpline worker` (two processes per CPU; the Procfile's 4 here)

Each set-up gets the same burst: a backlog of routine call back requests (each queues
a confirmation text), then more at --rate a second for --seconds, with an urgent
request (it also queues a counsellor alert) every --urgent-every seconds. It prints
routine jobs/s (confirmations Twilio accepted, first to last) with its ratio to the
baseline's, and the urgent hand-off: from queueing the request to Twilio receiving the
alert, p50 and p99 (alerts not handed off by the end count as later than all).

Run: .venv/bin/python bench/jobs.py   (or: make bench-jobs)
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))  # the stand-in lives with the tests

from callback_queue import caller  # noqa: E402

from helpline.application.jobs import RESULT_TTL, ROUTINE_QUEUE  # noqa: E402
from helpline.callbacks.queue import REQ, Contact  # noqa: E402
from helpline.counsellors.accounts import Counsellors  # noqa: E402
from helpline.infrastructure import embedded  # noqa: E402
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, HELPLINE_NUMBER, SECRET_KEY  # noqa: E402
from tests.twilio_api import TwilioApi  # noqa: E402
from workers import jobs  # noqa: E402
from workers.main import queue  # noqa: E402

COUNSELLOR = "bench"
COUNSELLOR_PHONE = caller(999_999_999)
SETUPS = ("baseline", "forking", "one-process", "default")
# More requests than any set-up sends the stand-in in one run.
MAX_REQUESTS = 1_000_000
# Seconds to wait, after the burst, for alerts still on their way.
GRACE_SECONDS = 5.0
BOOT_SECONDS = 60.0


@dataclass
class Outcome:
    setup: str
    routine_per_second: float
    routine_sent: int
    routine_queued: int
    handoffs: list[float]  # seconds, one per alert handed off
    urgent_queued: int


def baseline_worker() -> None:
    """Run the worker as before: RQ's forking worker on the one queue, nothing preloaded."""
    from rq import Queue, Worker
    from rq.serializers import JSONSerializer

    from helpline.infrastructure.logs import configure_logging

    configure_logging("INFO")
    connection = redis.Redis.from_url(os.environ["REDIS_URL"])
    fifo = Queue(ROUTINE_QUEUE, connection=connection, serializer=JSONSerializer)
    Worker(
        [fifo],
        connection=connection,
        serializer=JSONSerializer,
        default_result_ttl=RESULT_TTL,
        log_job_description=False,
    ).work(logging_level="INFO")


def worker_command(setup: str, processes: int | None) -> list[str]:
    if setup == "baseline":
        return [sys.executable, __file__, "--baseline-worker"]
    command = [sys.executable, "-m", "helpline", "worker"]
    if setup != "default":
        command += ["--processes", "1"]
    elif processes:
        command += ["--processes", str(processes)]
    if setup == "forking":
        command.append("--fork")
    return command


def ask(ctx: jobs.Context, n: int, *, urgent: bool, one_queue: bool) -> str:
    """Queue a call back request for caller n and its jobs, as the web does; return its id."""
    contact = Contact(caller(n), voicemail_ok=False, texts_ok=True)
    placement = ctx.queue.enqueue(contact, channel="sms", lang="en", urgent=urgent, confirm=True)
    request = placement.request
    routine = queue(ctx.client)
    if one_queue:  # as before: the alert after the confirmation, on the same queue
        routine.enqueue(jobs.confirm_request, request.id, job_id=f"confirm-{request.id}")
        if urgent:
            routine.enqueue(jobs.alert_counsellors, request.id, job_id=f"alert-{request.id}")
    else:
        ctx.jobs.after_queued(request, confirm=True)
    return request.id


def run_setup(setup: str, args: argparse.Namespace, data_dir: Path, url: str) -> Outcome:
    client = redis.Redis.from_url(url)
    client.flushall()
    jobs.context.cache_clear()
    ctx = jobs.context()
    counsellors = Counsellors(ctx.client, ctx.queue.sealer)
    counsellors.add(COUNSELLOR, name="Bench", phone=COUNSELLOR_PHONE, password="x" * 12)
    counsellors.set_on_duty(COUNSELLOR, True)
    one_queue = setup == "baseline"

    with TwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
        if args.twilio_latency:  # every answer takes this long, as Twilio's own would
            api.delay_next(args.twilio_latency, count=MAX_REQUESTS)
        env = {**os.environ, "TWILIO_API_URL": api.url}
        callers = itertools.count()
        for _ in range(args.backlog):
            ask(ctx, next(callers), urgent=False, one_queue=one_queue)
        worker = subprocess.Popen(
            worker_command(setup, args.processes),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            if args.backlog:
                api.wait_for(1, timeout=BOOT_SECONDS)  # the worker is up and sending
            urgent: dict[str, float] = {}
            offered = 0
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < args.seconds:
                due = len(urgent) <= elapsed / args.urgent_every  # on time, ahead of routine
                if not due and offered >= elapsed * args.rate:
                    time.sleep(0.001)
                    continue
                at = time.time()
                rid = ask(ctx, next(callers), urgent=due, one_queue=one_queue)
                if due:
                    urgent[rid] = at
                else:
                    offered += 1
            deadline = time.monotonic() + GRACE_SECONDS
            while time.monotonic() < deadline and not _all_alerted(ctx, urgent):
                time.sleep(0.1)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        routine = [m for m in api.messages() if m.form["To"] != COUNSELLOR_PHONE]
        by_sid = {m.sid: m.at for m in api.messages() if m.form["To"] == COUNSELLOR_PHONE}

    handoffs = []
    for rid, at in urgent.items():
        sid = ctx.client.hget(REQ + rid, f"sent:alert:{COUNSELLOR}")
        if sid is not None and sid.decode() in by_sid:
            handoffs.append(by_sid[sid.decode()] - at)
    span = routine[-1].at - routine[0].at if len(routine) > 1 else 0.0
    jobs.context.cache_clear()
    client.close()
    return Outcome(
        setup=setup,
        routine_per_second=(len(routine) - 1) / span if span else 0.0,
        routine_sent=len(routine),
        routine_queued=args.backlog + offered + len(urgent),
        handoffs=sorted(handoffs),
        urgent_queued=len(urgent),
    )


def _all_alerted(ctx: jobs.Context, urgent: dict[str, float]) -> bool:
    return all(ctx.client.hexists(REQ + rid, f"sent:alert:{COUNSELLOR}") for rid in urgent)


def quantile(outcome: Outcome, q: float) -> str:
    """Return the q-quantile hand-off in seconds; alerts never handed off count as slowest."""
    if not outcome.urgent_queued:
        return "-"
    rank = max(int(q * outcome.urgent_queued + 0.999999) - 1, 0)
    if rank >= len(outcome.handoffs):
        return "never"
    return f"{outcome.handoffs[rank]:.2f}"


def report(outcomes: Sequence[Outcome]) -> None:
    baseline = next((o for o in outcomes if o.setup == "baseline"), None)
    print(
        f"\n{'set-up':<12}{'routine jobs/s':>16}{'vs baseline':>13}{'sent/queued':>14}"
        f"{'urgent p50 s':>14}{'p99 s':>8}{'handed off':>12}"
    )
    for o in outcomes:
        ratio = (
            f"{o.routine_per_second / baseline.routine_per_second:.1f}×"
            if baseline and baseline.routine_per_second
            else "-"
        )
        print(
            f"{o.setup:<12}{o.routine_per_second:>16.1f}{ratio:>13}"
            f"{f'{o.routine_sent}/{o.routine_queued}':>14}"
            f"{quantile(o, 0.5):>14}{quantile(o, 0.99):>8}"
            f"{f'{len(o.handoffs)}/{o.urgent_queued}':>12}"
        )
    print(
        "\nroutine jobs/s: confirmations Twilio accepted, first to last; urgent: request"
        " queued to alert received by Twilio, during the burst."
    )
    for o in outcomes:
        if o.handoffs:
            print(
                f"  {o.setup}: hand-off max {o.handoffs[-1]:.2f} s, mean "
                f"{statistics.fmean(o.handoffs):.2f} s"
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=2_000, help="routine requests queued first")
    parser.add_argument("--rate", type=float, default=100.0, help="routine requests a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the burst")
    parser.add_argument("--urgent-every", type=float, default=0.25, help="seconds between urgent")
    parser.add_argument("--processes", type=int, help="worker processes of the default set-up")
    parser.add_argument(
        "--twilio-latency", type=float, default=0.0, help="seconds the stand-in takes to answer"
    )
    parser.add_argument(
        "--setups", default=",".join(SETUPS), help=f"comma-separated, of: {', '.join(SETUPS)}"
    )
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_worker:
        baseline_worker()
        return 0
    setups = [s.strip() for s in args.setups.split(",")]
    unknown = set(setups) - set(SETUPS)
    if unknown:
        print(f"unknown set-ups: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="hl-bench-", dir="/tmp"))
    url, _ = embedded.ensure_running(data_dir)
    os.environ.update(
        HELPLINE_ENV="development",
        HELPLINE_DATA_DIR=str(data_dir),
        REDIS_URL=url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        SECRET_KEY=SECRET_KEY,
        HELPLINE_PHONE_NUMBER=HELPLINE_NUMBER,
    )
    print(
        f"burst: {args.backlog} routine requests queued, then {args.rate:g}/s for "
        f"{args.seconds:g} s with an urgent one every {args.urgent_every:g} s; "
        f"Twilio answers in {args.twilio_latency:g} s"
    )
    outcomes = []
    try:
        for setup in setups:
            outcome = run_setup(setup, args, data_dir, url)
            print(
                f"  {setup}: {outcome.routine_per_second:.1f} routine jobs/s, "
                f"{len(outcome.handoffs)}/{outcome.urgent_queued} alerts handed off",
                flush=True,
            )
            outcomes.append(outcome)
    finally:
        embedded.stop(data_dir)
    report(outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
