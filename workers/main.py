"""The worker process: two RQ queues served urgent first, JSON jobs, reliable dequeue.

Urgent work (counsellor alerts) has a queue of its own, and every worker looks there
before it takes routine work (confirmations, missed-call texts, housekeeping), so an
alert never waits behind a backlog of texts. `helpline worker` runs several of these
processes (see helpline.infrastructure.supervisor).

How a job is taken and kept safe (RQ 3.0, Redis 6.2+):

* Dequeue: each job id moves atomically (LMOVE, or BLMOVE when idle) from its queue into
  `<queue>:intermediate` before it runs, so an id is never only in a dead process's
  memory. RQ does this itself only for a worker with one queue (with several it pops
  with BLPOP); HelplineQueue.dequeue_any does it for both queues, urgent first. A job
  left there (the worker died between taking it and registering it as started) is
  retried by a maintenance pass at least a minute after another pass first saw it:
  within two minutes at our interval.
* Running: a job runs in the worker process itself. RQ's default, a work-horse forked
  per job, had each job load the flows and the Twilio client afresh (about 0.4 s: 2-3
  jobs a second) and, with them loaded before the fork, still cost about 50 ms a job
  against about 15 ms in the worker (bench/jobs.py). Our jobs are short REST calls with
  a 10 s timeout: they need no process of their own.
* A started job sits in its queue's StartedJobRegistry with a deadline that a thread
  pushes back while it runs (every JOB_MONITORING_INTERVAL seconds, by HEARTBEAT_GRACE
  more). If the worker dies, the deadline lapses and the next maintenance pass of any
  worker retries the job: at most JOB_MONITORING_INTERVAL + HEARTBEAT_GRACE +
  MAINTENANCE_INTERVAL (about 70 seconds) after the last heartbeat, plus the job's first
  retry interval.
* A job that hangs is stopped at its timeout (SIGALRM, as RQ does in a work-horse). If it
  is still running HEARTBEAT_GRACE later, the alarm could not stop it: the process
  ends itself, the deadline lapses and another worker retries the job.
* Redis going away: every Redis command of a worker is retried, with growing gaps, until
  Redis answers again; the worker (and a job waiting on Redis, up to its timeout) then
  carries on. An outage longer than the deadline lets another worker retry a job that
  is still waiting here; send_once checks Twilio's message log before a second send.
* A retry re-runs the whole job; jobs are written for that (workers.jobs.send_once).

`run(..., fork=True)` keeps RQ's forking worker, for jobs that need a process of their
own; a killed work-horse's job is then retried at once by its worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import redis
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import DequeueTimeout, NoSuchJobError, StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import as_text, get_version, now
from rq.worker import BaseWorker, WorkerStatus

from helpline.application.config import Settings
from helpline.application.jobs import JOB_TIMEOUT, QUEUE_NAMES, RESULT_TTL, ROUTINE_QUEUE, Jobs
from helpline.application.jobs import Job as JobName
from helpline.infrastructure.constants import KEY_PREFIX
from helpline.infrastructure.logs import configure_logging
from helpline.infrastructure.metrics import JOBS
from workers.connection import connect
from workers.jobs import context

log = logging.getLogger(__name__)

# Seconds an idle worker waits on the urgent queue before it looks at the routine one
# again: urgent work wakes it at once, routine work within this.
IDLE_POLL_SECONDS = 1
# Seconds between maintenance passes (RQ's registry clean-up, which retries abandoned
# jobs, and our housekeeping tick). Idle workers wake this often to run them.
MAINTENANCE_INTERVAL = 30
# Seconds a maintenance pass holds its lock (it releases it when done). RQ's own lock
# lasts 899 seconds: a worker killed mid-pass would hold up every other worker's passes,
# and so the retry of abandoned jobs, for 15 minutes.
MAINTENANCE_LOCK_SECONDS = MAINTENANCE_INTERVAL - 1
# Seconds between heartbeats for the job a worker runs.
JOB_MONITORING_INTERVAL = 10
# Seconds a missed heartbeat is forgiven before a started job counts as abandoned.
HEARTBEAT_GRACE = 30
# Seconds within which a worker does not renew its own registration again: RQ renews it
# three times a job, three writes each, every one waiting on Redis's fsync.
WORKER_HEARTBEAT_GAP = 1.0
# Seconds between one worker's polls of the check-ins due.
CHECKIN_POLL_SECONDS = 1.0
# Held for one maintenance interval by the worker that queued the housekeeping job.
HOUSEKEEPING_LOCK = f"{KEY_PREFIX}:housekeeping"


class HelplineQueue(Queue):
    """RQ's queue, with a reliable dequeue across queues in priority order."""

    def acquire_maintenance_lock(self) -> bool:
        """Take the maintenance lock for one pass; it lapses before the next pass is due."""
        key = self.registry_cleaning_key
        return bool(self.connection.set(key, 1, nx=True, ex=MAINTENANCE_LOCK_SECONDS))

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: redis.Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        """Take the next job from the first of `queues` that has one, waiting up to `timeout`.

        Each id moves into its queue's intermediate list as it is taken (see above). Redis
        can only block on one list at a time: an idle worker blocks on the first queue for
        up to IDLE_POLL_SECONDS, then looks at all of them again. `timeout` None: no wait.
        """
        if get_version(connection) < (6, 2, 0):  # no LMOVE: RQ's own way, without the list
            return super().dequeue_any(
                queues, timeout, connection, job_class, serializer, death_penalty_class
            )
        queues = list(queues)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            poll_checkins()
            for source in queues:
                job_id = connection.lmove(source.key, source.intermediate_queue_key)
                if job_id is not None:
                    break
            else:
                if deadline is None:
                    return None
                if time.monotonic() >= deadline:
                    raise DequeueTimeout(timeout, [q.key for q in queues])
                source = queues[0]
                job_id = connection.blmove(
                    source.key, source.intermediate_queue_key, IDLE_POLL_SECONDS
                )
                if job_id is None:
                    continue
            job_cls = job_class or Job
            try:
                job = job_cls.fetch(as_text(job_id), connection=connection, serializer=serializer)
            except NoSuchJobError:
                continue  # deleted since it was queued; maintenance clears the id
            return job, cls.from_queue_key(
                source.key,
                connection=connection,
                job_class=job_cls,
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )


def queue(connection: redis.Redis, name: str = ROUTINE_QUEUE) -> Queue:
    """Return one of the helpline's job queues (JSON: jobs carry ids, never objects)."""
    return HelplineQueue(
        name,
        connection=connection,
        serializer=JSONSerializer,
        default_timeout=JOB_TIMEOUT,
    )


def queues(connection: redis.Redis) -> list[Queue]:
    """Return every job queue, in the order workers serve them: urgent first."""
    return [queue(connection, name) for name in QUEUE_NAMES]


class _Helpline(BaseWorker):
    """What both kinds of helpline worker add to RQ's."""

    heartbeat_grace = HEARTBEAT_GRACE
    queue_class = HelplineQueue
    # Whether a stop was asked for (SIGTERM, Ctrl-C): a worker that ends without one failed.
    stop_asked = False

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """Return how long a started job counts as alive without another heartbeat."""
        # RQ adds a fixed 60 seconds here; ours is shorter so a dead worker's job is
        # retried sooner. Heartbeats come every job_monitoring_interval while it runs.
        ttl = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            ttl = min(ttl, max(int(job.timeout - working_time), 1))
        return int(ttl) + self.heartbeat_grace

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """Renew the worker's registration: in one round trip, and not twice a second."""
        if timeout is not None or pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        last = self.last_heartbeat
        if last is not None and (now() - last).total_seconds() < WORKER_HEARTBEAT_GAP:
            return  # the registration lasts worker_ttl + 60 seconds from then
        with self.connection.pipeline() as pipe:
            super().heartbeat(pipeline=pipe)
            pipe.execute()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """Record the worker's state (idle, busy) in Redis, unless it is already that."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def run_maintenance_tasks(self) -> None:
        """Run RQ's maintenance, then queue housekeeping if no other worker did lately."""
        super().run_maintenance_tasks()
        tick_housekeeping(context().jobs, self.maintenance_interval)

    def handle_job_success(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        """Count the job as finished, then let RQ record it."""
        JOBS.labels(_job_name(job), "finished").inc()
        super().handle_job_success(job, queue, *args, **kwargs)

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        """Count the job as failed (or to be retried), then let RQ record it."""
        JOBS.labels(_job_name(job), "retried" if job.should_retry else "failed").inc()
        super().handle_job_failure(job, queue, *args, **kwargs)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Register the job as started and take it off its intermediate list."""
        # RQ takes it off only for a worker with a single queue; every job here came
        # through the list. Left there, maintenance would fail and retry a finished job.
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def request_stop(self, signum: int, frame: Any) -> None:
        """Stop after the current job (RQ's warm shutdown), noting that it was asked for."""
        self.stop_asked = True
        super().request_stop(signum, frame)


class HelplineWorker(_Helpline, SimpleWorker):
    """RQ's worker, running each job in the worker process itself, with heartbeats."""

    _heartbeats: _Heartbeats | None = None

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run one job here, keeping its deadline ahead of it while it runs."""
        execution = self.prepare_execution(job)
        self._heartbeats = _Heartbeats(self, job, execution)
        with self._heartbeats:
            self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """Stop the heartbeats before RQ records how the job ended."""
        if self._heartbeats is not None:
            self._heartbeats.stop()
        super().handle_execution_ended(job, queue, heartbeat_ttl)


class ForkingWorker(_Helpline, Worker):
    """RQ's forking worker: each job in a work-horse process of its own."""


class _Heartbeats:
    """A thread that keeps a running job's deadline ahead of it, and ends a hung job."""

    def __init__(self, worker: HelplineWorker, job: Job, execution: Execution):
        self.worker = worker
        self.job = job
        self.execution = execution
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeats {job.id}")
        timeout = job.timeout if job.timeout and job.timeout > 0 else JOB_TIMEOUT
        # Past this, the alarm that stops a job at its timeout did not work.
        self._give_up_at = time.monotonic() + timeout + worker.heartbeat_grace

    def __enter__(self) -> _Heartbeats:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _beat(self) -> None:
        while not self._stopped.wait(self.worker.job_monitoring_interval):
            if time.monotonic() > self._give_up_at:
                log.error(
                    "job overran its timeout and could not be stopped; ending this worker",
                    extra={"job": self.job.id},
                )
                os._exit(1)  # the job's deadline lapses and another worker retries it
            try:
                self.worker.maintain_heartbeats(self.job, self.execution)
            except redis.RedisError as exc:
                log.warning("heartbeat failed", extra={"error": type(exc).__name__})


_KNOWN_JOBS = frozenset(name.value for name in JobName)


def _job_name(job: Job) -> str:
    """A job's short name for metrics: one of ours, or "other" (never an id)."""
    name = job.func_name
    return name.rpartition(".")[2] if name in _KNOWN_JOBS else "other"


_last_poll = 0.0


def poll_checkins() -> int:
    """Hand on the check-in work due now, at most once a second per worker process.

    Called between jobs and while idle (at least every IDLE_POLL_SECONDS), so a call is
    claimed within about a second of its due time by whichever worker looks first; the
    claim is atomic, so any number of workers may look.
    """
    global _last_poll
    if time.monotonic() - _last_poll < CHECKIN_POLL_SECONDS:
        return 0
    _last_poll = time.monotonic()
    try:
        return len(context().checkins.tick())
    except StopRequested:
        raise  # SIGTERM arrived while polling: the worker stops as asked
    except Exception as exc:  # noqa: BLE001 - the worker keeps serving; the next poll retries
        log.error("check-ins not polled", extra={"error": type(exc).__name__})
        return 0


def tick_housekeeping(jobs: Jobs, interval: float) -> bool:
    """Queue one housekeeping job per interval across all workers; True if this one did."""
    # The lock lapses just before the next tick, so some worker always takes it.
    if not jobs.connection.set(HOUSEKEEPING_LOCK, 1, nx=True, ex=max(int(interval) - 1, 1)):
        return False
    try:
        jobs.housekeeping()
    except redis.RedisError as exc:
        log.error("housekeeping not queued", extra={"error": type(exc).__name__})
        return False
    return True


def make_worker(
    connection: redis.Redis,
    *,
    fork: bool = False,
    maintenance_interval: int = MAINTENANCE_INTERVAL,
    job_monitoring_interval: int = JOB_MONITORING_INTERVAL,
    heartbeat_grace: int = HEARTBEAT_GRACE,
    **options: Any,
) -> _Helpline:
    """Build a worker for the helpline's queues; the intervals are seconds (see above)."""
    kind: type[_Helpline] = ForkingWorker if fork else HelplineWorker
    worker = kind(
        queues(connection),
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=maintenance_interval,
        job_monitoring_interval=job_monitoring_interval,
        # An idle worker waits for work for worker_ttl - 15 seconds between
        # maintenance passes: keep that to the maintenance interval.
        worker_ttl=maintenance_interval + 15,
        default_result_ttl=RESULT_TTL,
        log_job_description=False,  # descriptions would show arguments
        **options,
    )
    worker.heartbeat_grace = heartbeat_grace
    return worker


def run(settings: Settings, *, burst: bool = False, fork: bool = False, **intervals: int) -> int:
    """Work the queues until stopped; return the exit status (non-zero: the worker failed).

    The first SIGTERM (or Ctrl-C) lets the current job finish, then the worker exits; a
    second one stops it at once (the job is then retried, as for a killed worker).
    """
    configure_logging(settings.log_level)
    # The twilio library logs request URLs and headers at INFO: they hold phone numbers.
    logging.getLogger("twilio").setLevel(logging.WARNING)
    connection = connect(settings)
    # Load the jobs' resources (flows, the Twilio client) once, not in each job's first
    # moments: a work-horse, when forking, inherits them loaded.
    context().warm()
    worker = make_worker(connection, fork=fork, **intervals)
    log.info("worker starting", extra={"queues": ",".join(QUEUE_NAMES), "fork": fork})
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    if burst or worker.stop_asked:
        return 0
    log.error("worker stopped without being asked to")  # RQ logged why, just before
    return 1
