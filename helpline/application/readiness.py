"""Whether this deployment can do all of its work: Redis, the workers, the scheduler, the flows.

`GET /readyz` and `helpline doctor` read it. Each part is ok, degraded or down, with a
sentence an operator can act on. Only Redis is asked, in two round trips: RQ keeps the
workers' registrations (`rq:workers`, each worker's hash with its `last_heartbeat`) and
the scheduler's locks (`rq:scheduler-lock:<queue>`, held while a scheduler beats) there.

A worker renews its registration at least every MAINTENANCE_INTERVAL + 15 seconds
while idle (workers.main), and about once a second while busy; the scheduler, which
one worker runs for every queue, renews its locks every second and they lapse 61
seconds after its last beat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis
from rq.scheduler import RQScheduler
from rq.utils import utcparse
from rq.worker_registration import REDIS_WORKER_KEYS

from helpline.application.jobs import QUEUE_NAMES, URGENT_QUEUE, job_queue
from helpline.conversation.lint import Library, fingerprint
from helpline.infrastructure.store import Store

# Seconds since its last heartbeat within which a worker counts as running.
WORKER_SEEN_SECONDS = 60
# Seconds the oldest urgent job (a counsellor alert, a "Call now") may wait for a worker
# before the workers count as degraded: they run but do not keep up.
URGENT_WAIT_SECONDS = 30

# What callers get while Redis is away, said wherever Redis is down.
FAILSAFE_NOTE = (
    "Redis is down: every call and text is still answered, with the safety advice and "
    "the emergency number (fail-safe answers), but no call back request can be taken "
    "and no conversation is kept until Redis is back"
)


class State(StrEnum):
    """How one part of the deployment is doing."""

    OK = "ok"
    DEGRADED = "degraded"  # working, but not as it should
    DOWN = "down"


@dataclass(frozen=True)
class Check:
    """One part's state and what an operator should know about it."""

    state: State
    detail: str


@dataclass(frozen=True)
class Report:
    """Every part's check, in the order an operator reads them."""

    redis: Check
    workers: Check
    scheduler: Check
    flows: Check

    @property
    def parts(self) -> dict[str, Check]:
        return {
            "redis": self.redis,
            "workers": self.workers,
            "scheduler": self.scheduler,
            "flows": self.flows,
        }

    @property
    def ready(self) -> bool:
        return all(check.state is State.OK for check in self.parts.values())

    def to_json(self) -> dict[str, Any]:
        """The /readyz body: each part's state at the top, then what each means."""
        body: dict[str, Any] = {name: check.state.value for name, check in self.parts.items()}
        body["ready"] = self.ready
        body["details"] = {name: check.detail for name, check in self.parts.items()}
        if self.redis.state is State.DOWN:
            body["webhooks"] = FAILSAFE_NOTE
        return body


@dataclass(frozen=True)
class _Seen:
    """What Redis said about the workers and the scheduler, read in one go."""

    persistence: dict[str, Any]
    heartbeats: list[datetime | None]
    scheduled: dict[str, bool]  # queue name -> a scheduler holds its lock
    oldest_urgent: datetime | None  # when the urgent job waiting longest was queued


class Readiness:
    """Reads the state of every part; never raises, never waits long for Redis."""

    def __init__(
        self,
        store: Store,
        library: Callable[[], Library],
        flows_dir: Path,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.library = library  # the flows this process serves, loaded on first call
        self.flows_dir = flows_dir
        self.clock = clock
        # The flows' files as this process loaded them, to notice later edits.
        self.loaded_files = fingerprint(flows_dir)

    def check(self) -> Report:
        seen = self.store.attempt("readiness", self._read, None)
        flows = self._flows()
        if seen is None:
            unknown = "unknown while Redis is down"
            return Report(
                redis=Check(State.DOWN, "cannot reach Redis (or it failed a moment ago)"),
                workers=Check(State.DOWN, unknown),
                scheduler=Check(State.DOWN, unknown),
                flows=flows,
            )
        return Report(
            redis=self._redis(seen.persistence),
            workers=self._workers(seen),
            scheduler=self._scheduler(seen.scheduled),
            flows=flows,
        )

    def _read(self, client: redis.Redis) -> _Seen:
        urgent = job_queue(client, URGENT_QUEUE)
        with client.pipeline(transaction=False) as pipe:
            pipe.info("persistence")
            pipe.smembers(REDIS_WORKER_KEYS)
            for name in QUEUE_NAMES:
                pipe.exists(RQScheduler.get_locking_key(name))
            pipe.lindex(urgent.key, 0)  # RQ queues at the right and takes from the left
            persistence, workers, *rest = pipe.execute()
        locks, oldest_id = rest[: len(QUEUE_NAMES)], rest[-1]
        workers = sorted(workers)
        with client.pipeline(transaction=False) as pipe:
            for key in workers:
                pipe.hget(key, "last_heartbeat")
            if oldest_id is not None:
                pipe.hget(urgent.job_class.key_for(_text(oldest_id)), "enqueued_at")
            found = pipe.execute()
        heartbeats = [_when(raw) for raw in found[: len(workers)]]
        oldest = _when(found[-1]) if oldest_id is not None else None
        return _Seen(
            persistence=persistence,
            heartbeats=heartbeats,
            scheduled={name: bool(held) for name, held in zip(QUEUE_NAMES, locks, strict=True)},
            oldest_urgent=oldest,
        )

    def _redis(self, persistence: dict[str, Any]) -> Check:
        if persistence.get("loading"):
            return Check(State.DEGRADED, "Redis is loading its data from disk")
        if persistence.get("aof_enabled") and persistence.get("aof_last_write_status") != "ok":
            return Check(
                State.DEGRADED,
                "Redis cannot write its append-only file (disk full?): writes may be refused",
            )
        if persistence.get("rdb_last_bgsave_status", "ok") != "ok":
            return Check(State.DEGRADED, "Redis's last snapshot to disk failed")
        aof = "append-only file on" if persistence.get("aof_enabled") else "append-only file off"
        return Check(State.OK, f"Redis answers ({aof})")

    def _workers(self, seen: _Seen) -> Check:
        now = self.clock()
        ages = sorted(now - beat.timestamp() for beat in seen.heartbeats if beat is not None)
        running = [age for age in ages if age <= WORKER_SEEN_SECONDS]
        if not running:
            if ages:
                return Check(
                    State.DOWN,
                    f"no worker seen in the last {WORKER_SEEN_SECONDS} s "
                    f"(the last one {_ago(ages[0])} ago): texts and alerts are not being sent",
                )
            return Check(State.DOWN, "no worker is running: texts and alerts are not being sent")
        count = f"{len(running)} worker" + ("" if len(running) == 1 else "s")
        if seen.oldest_urgent is not None:
            waited = now - seen.oldest_urgent.timestamp()
            if waited > URGENT_WAIT_SECONDS:
                return Check(
                    State.DEGRADED,
                    f"{count} running, but an urgent job has waited {_ago(waited)} for one",
                )
        return Check(State.OK, f"{count} seen in the last {WORKER_SEEN_SECONDS} s")

    def _scheduler(self, scheduled: dict[str, bool]) -> Check:
        missing = [name for name, held in scheduled.items() if not held]
        if not missing:
            return Check(State.OK, "a worker schedules retries and delayed jobs")
        what = "retries and delayed jobs wait (workers start one; is any worker running?)"
        if len(missing) == len(scheduled):
            return Check(State.DOWN, f"no scheduler is running: {what}")
        return Check(State.DEGRADED, f"no scheduler for the {', '.join(missing)} queue: {what}")

    def _flows(self) -> Check:
        try:
            library = self.library()
        except Exception as exc:  # a broken flows directory: say so, do not fail the probe
            return Check(State.DOWN, f"the flows cannot be loaded: {exc}")
        flows = f"{len(library.flows)} flows in {', '.join(library.content.languages)}"
        try:
            changed = fingerprint(self.flows_dir) != self.loaded_files
        except OSError:
            changed = True
        if changed:
            return Check(
                State.DEGRADED,
                f"serving {flows}, but the files in {self.flows_dir} changed since they were "
                "loaded: run `helpline flows check`, then restart the web processes",
            )
        return Check(State.OK, f"serving {flows}")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _when(raw: bytes | str | None) -> datetime | None:
    """Parse one of RQ's UTC timestamps; None when missing or unreadable."""
    if not raw:
        return None
    try:
        return utcparse(_text(raw))
    except ValueError:
        return None


def _ago(seconds: float) -> str:
    """Say a duration the way an operator reads it: 45 s, 3 min, 2 h."""
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
