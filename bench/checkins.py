"""Benchmark check-in calls: how late the calls go out when many fall due together.

Against a real embedded redis-server (AOF, fsync on every write, as `helpline serve`
runs it), the loopback stand-in of Twilio's REST API (tests/twilio_api.py) and
`helpline worker --processes 2`: --sessions check-ins are booked (as the `checkin` action
books them) due within --spread seconds of one moment, a little after the workers have
started; the run ends when every session has had its call or after a grace period.

Lateness is from a session's due time to the stand-in receiving its call. It prints the
p50, p99 and worst lateness (the goal: p99 under 10 s), and checks every session was
called exactly once: no call missing, none placed twice. Each --spreads value is one
round; 60 is "in the same minute", 0 is every call due at the same instant.

Run: .venv/bin/python bench/checkins.py
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))  # the stand-in lives with the tests

from callback_queue import caller  # noqa: E402

from helpline.infrastructure import embedded  # noqa: E402
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, HELPLINE_NUMBER, SECRET_KEY  # noqa: E402
from tests.twilio_api import TwilioApi  # noqa: E402
from workers import jobs  # noqa: E402

# Seconds from booking to the first due time: the workers start meanwhile.
LEAD_SECONDS = 20.0
# Seconds after the last due time to wait for calls still on their way.
GRACE_SECONDS = 60.0
GOAL_P99_SECONDS = 10.0


@dataclass
class Round:
    spread: float
    sessions: int
    lateness: list[float]  # seconds, one per session called
    twice: int  # sessions called more than once
    missing: int  # sessions never called


def run_round(args: argparse.Namespace, url: str, spread: float) -> Round:
    client = redis.Redis.from_url(url)
    client.flushall()
    jobs.context.cache_clear()
    ctx = jobs.context()
    sessions = ctx.checkin_sessions
    first_due = time.time() + LEAD_SECONDS
    due: dict[str, float] = {}
    for n in range(args.sessions):
        at = first_due + (spread * n / args.sessions if spread else 0.0)
        sessions.book(caller(n), minutes=1, due=at, lang="en", channel="sms", place="bench")
        due[caller(n)] = at
    with TwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
        env = {**os.environ, "TWILIO_API_URL": api.url}
        worker = subprocess.Popen(
            [sys.executable, "-m", "helpline", "worker", "--processes", str(args.processes)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = first_due + spread + GRACE_SECONDS
            while time.time() < deadline and len(api.calls()) < args.sessions:
                time.sleep(0.2)
            time.sleep(1.0)  # a second call for anyone would show by now
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        calls = api.calls()
    placed = Counter(call.form["To"] for call in calls)
    first: dict[str, float] = {}
    for call in calls:
        first.setdefault(call.form["To"], call.at)
    jobs.context.cache_clear()
    client.close()
    return Round(
        spread=spread,
        sessions=args.sessions,
        lateness=sorted(first[number] - due[number] for number in first),
        twice=sum(1 for count in placed.values() if count > 1),
        missing=sum(1 for number in due if number not in placed),
    )


def quantile(values: Sequence[float], q: float) -> float:
    return values[max(int(q * len(values) + 0.999999) - 1, 0)] if values else float("nan")


def report(rounds: Sequence[Round]) -> None:
    print()
    print(
        "| due within | sessions | called once | twice | never | p50 s | p99 s | worst s "
        "| p99 vs 10 s goal |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rounds:
        p99 = quantile(r.lateness, 0.99)
        print(
            f"| {r.spread:g} s | {r.sessions} | {len(r.lateness) - r.twice} | {r.twice} "
            f"| {r.missing} | {statistics.median(r.lateness):.2f} | {p99:.2f} "
            f"| {r.lateness[-1]:.2f} | {p99 / GOAL_P99_SECONDS:.2f} |"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--spreads", default="60,0", help="seconds the due times spread over, one round each"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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
        PUBLIC_URL="https://helpline.example",
    )
    rounds = []
    try:
        for spread in (float(s) for s in args.spreads.split(",")):
            result = run_round(args, url, spread)
            print(
                f"  due within {spread:g} s: {len(result.lateness)}/{result.sessions} called, "
                f"p99 {quantile(result.lateness, 0.99):.2f} s",
                flush=True,
            )
            rounds.append(result)
    finally:
        embedded.stop(data_dir)
    report(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
