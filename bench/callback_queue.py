"""Benchmark the callback queue's enqueue, position lookup and claim_next as it grows.

Against a real embedded redis-server (AOF on, fsync on every write, as the helpline runs
it), with 1,000 / 10,000 / 100,000 waiting requests. Each operation's latency is printed
with its ratio to a plain PING round trip measured in the same run, and how it grows
from the smallest queue to the largest.

Run: .venv/bin/python bench/callback_queue.py   (or: make bench-queue)
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from helpline.callbacks.queue import CallbackQueue, Contact
from helpline.infrastructure import embedded
from helpline.infrastructure.crypto import Sealer, lookup_key

SECRET_KEY = "bench-secret-key-" + "k" * 48  # a fixed bench value, never a real secret
SIZES = (1_000, 10_000, 100_000)
SAMPLES = 1_000  # timed calls of each operation at each size


def caller(n: int) -> str:
    """Return the n-th bench number: +999 is an unassigned country code, never dialled."""
    return f"+999{n:09d}"


def fill(queue: CallbackQueue, start: int, stop: int) -> None:
    """Queue requests for callers start..stop-1 as the intake does, one by one.

    Redis syncs its log once a second while filling (a fsync per request would make
    filling 100,000 take minutes); the timed operations run with a fsync per write.
    """
    queue.client.config_set("appendfsync", "everysec")
    try:
        for n in range(start, stop):
            queue.enqueue(
                Contact(caller(n), voicemail_ok=False, texts_ok=True),
                channel="voice",
                lang="en",
                urgent=n % 10 == 0,
            )
    finally:
        queue.client.config_set("appendfsync", "always")


def timed(operation: Callable[[int], object], count: int) -> list[float]:
    """Return each call's latency in microseconds."""
    latencies = []
    for i in range(count):
        started = time.perf_counter_ns()
        operation(i)
        latencies.append((time.perf_counter_ns() - started) / 1_000)
    return latencies


def p(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100)[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="hl-bench-", dir="/tmp"))
    url, _ = embedded.ensure_running(data_dir)
    try:
        client = redis.Redis.from_url(url)
        queue = CallbackQueue(client, Sealer(SECRET_KEY), lookup_key(SECRET_KEY))
        results: dict[str, dict[int, list[float]]] = {}
        timed(lambda i: client.ping(), 2_000)  # warm up the connection and the CPU caches
        filled = 0
        next_caller = max(SIZES) + 1
        for size in SIZES:
            started = time.monotonic()
            fill(queue, filled, size)
            filled = size
            waiting = [rid.decode() for rid in client.zrange("helpline:cb:waiting", 0, -1)]
            fill_seconds = time.monotonic() - started
            print(f"{size:>7,} waiting (filled in {fill_seconds:.1f}s)")

            picks = random.sample(waiting, min(args.samples, len(waiting)))

            def enqueue(i: int, base: int = next_caller) -> object:
                contact = Contact(caller(base + i), voicemail_ok=False, texts_ok=True)
                return queue.enqueue(contact, channel="sms", lang="en", urgent=False)

            timings = {
                "ping (baseline)": timed(lambda i: client.ping(), args.samples),
                "position": timed(
                    lambda i, ids=picks: queue.position(ids[i % len(ids)]), args.samples
                ),
                "enqueue": timed(enqueue, args.samples),
                # As many claims as enqueues: the queue is back to `size` afterwards.
                "claim_next": timed(lambda i: queue.claim_next("bench"), args.samples),
            }
            next_caller += args.samples
            for name, latencies in timings.items():
                results.setdefault(name, {})[size] = latencies

        print()
        baseline = results["ping (baseline)"]
        header = f"{'operation':<16}" + "".join(
            f"{f'{size:,}: p50/p99 µs (×ping)':>34}" for size in SIZES
        )
        print(header + f"{'growth p50 ' + f'{SIZES[0]:,}→{SIZES[-1]:,}':>26}")
        for name, by_size in results.items():
            cells = []
            for size in SIZES:
                p50, p99 = p(by_size[size], 50), p(by_size[size], 99)
                ratio = p50 / p(baseline[size], 50)
                cells.append(f"{p50:>9.0f} / {p99:>7.0f} ({ratio:>4.1f}×)")
            growth = p(by_size[SIZES[-1]], 50) / p(by_size[SIZES[0]], 50)
            print(f"{name:<16}" + "".join(f"{cell:>34}" for cell in cells) + f"{growth:>25.2f}×")
        print(
            "\n×ping: the operation's p50 over a PING round trip's p50 at the same size;"
            " growth: p50 at the largest size over p50 at the smallest."
        )
    finally:
        embedded.stop(data_dir)


if __name__ == "__main__":
    main()
