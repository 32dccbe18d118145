"""The worker process: one RQ queue per process, JSON jobs, reliable dequeue.

How a killed worker's job comes back (RQ 3.0, Redis 6.2+):

* Dequeue: with a single queue, RQ moves each job id atomically (BLMOVE) from the queue
  into `<queue>:intermediate` before running it, so an id is never only in a dead
  process's memory. A job left there (the worker died between taking it and registering
  it as started) is retried by a maintenance pass at least a minute after another pass
  first saw it: within two minutes at our interval.
* Running: a started job sits in the queue's StartedJobRegistry, scored with a deadline
  the worker keeps pushing back while the job runs (every JOB_MONITORING_INTERVAL
  seconds, by HEARTBEAT_GRACE more). If the work-horse alone is killed, the worker sees
  it at once and retries the job. If the whole worker dies, the deadline lapses and the
  next maintenance pass of any worker retries the job: at most JOB_MONITORING_INTERVAL +
  HEARTBEAT_GRACE + MAINTENANCE_INTERVAL (about 70 seconds) after the last heartbeat,
  plus the job's first retry interval.
* A retry re-runs the whole job; jobs are written for that (workers.jobs.send_once).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from helpline import embedded
from helpline.config import Settings
from helpline.logs import configure_logging

log = logging.getLogger(__name__)

# One queue per worker process: with a single queue RQ moves each job atomically
# (BLMOVE) into an intermediate list, so a killed worker's job is found and retried.
QUEUE_NAME = "helpline"
# Seconds between maintenance passes (RQ's registry clean-up, which retries abandoned
# jobs, and our housekeeping tick). Idle workers wake this often to run them.
MAINTENANCE_INTERVAL = 30
# Seconds a maintenance pass holds its lock (it releases it when done). RQ's own lock
# lasts 899 seconds: a worker killed mid-pass would hold up every other worker's passes,
# and so the retry of abandoned jobs, for 15 minutes.
MAINTENANCE_LOCK_SECONDS = MAINTENANCE_INTERVAL - 1
# Seconds between a busy worker's heartbeats for the job its work-horse runs.
JOB_MONITORING_INTERVAL = 10
# Seconds a missed heartbeat is forgiven before a started job counts as abandoned.
HEARTBEAT_GRACE = 30
# Seconds a finished job's result is kept (a Message SID; nobody reads it later).
RESULT_TTL = 60
# Seconds a failed job stays in RQ's failed registry for an operator to look at.
FAILURE_TTL = 7 * 24 * 60 * 60
# Seconds any one job may run: a text is a REST call or two with a 10-second timeout.
JOB_TIMEOUT = 120


class HelplineQueue(Queue):
    """RQ's queue, with a maintenance lock that lapses before the next pass."""

    def acquire_maintenance_lock(self) -> bool:
        key = self.registry_cleaning_key
        return bool(self.connection.set(key, 1, nx=True, ex=MAINTENANCE_LOCK_SECONDS))


def queue(connection: redis.Redis) -> Queue:
    """Return the helpline's job queue (JSON serialised: jobs carry ids, never objects)."""
    return HelplineQueue(
        QUEUE_NAME,
        connection=connection,
        serializer=JSONSerializer,
        default_timeout=JOB_TIMEOUT,
    )


class HelplineWorker(Worker):
    """RQ's forking worker, with a shorter abandoned-job deadline and a housekeeping tick."""

    heartbeat_grace = HEARTBEAT_GRACE
    queue_class = HelplineQueue

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """Return how long a started job counts as alive without another heartbeat."""
        # RQ adds a fixed 60 seconds here; ours is shorter so a dead worker's job is
        # retried sooner. Heartbeats come every job_monitoring_interval while it runs.
        ttl = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            ttl = min(ttl, max(int(job.timeout - working_time), 1))
        return int(ttl) + self.heartbeat_grace

    def run_maintenance_tasks(self) -> None:
        """Run RQ's maintenance, then queue housekeeping if no other worker did lately."""
        super().run_maintenance_tasks()
        tick_housekeeping(self.connection, self.maintenance_interval)


def tick_housekeeping(connection: redis.Redis, interval: float) -> bool:
    """Queue one housekeeping job per interval across all workers; True if this one did."""
    from workers.jobs import HOUSEKEEPING_LOCK, housekeeping  # jobs imports this module

    # The lock lapses just before the next tick, so some worker always takes it.
    if not connection.set(HOUSEKEEPING_LOCK, 1, nx=True, ex=max(int(interval) - 1, 1)):
        return False
    try:
        queue(connection).enqueue(housekeeping, result_ttl=0, failure_ttl=FAILURE_TTL)
    except redis.RedisError as exc:
        log.error("housekeeping not queued", extra={"error": type(exc).__name__})
        return False
    return True


def make_worker(
    connection: redis.Redis,
    *,
    maintenance_interval: int = MAINTENANCE_INTERVAL,
    job_monitoring_interval: int = JOB_MONITORING_INTERVAL,
    heartbeat_grace: int = HEARTBEAT_GRACE,
    **options: Any,
) -> HelplineWorker:
    """Build a worker for the helpline's queue; the intervals are seconds (see above)."""
    worker = HelplineWorker(
        [queue(connection)],
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=maintenance_interval,
        job_monitoring_interval=job_monitoring_interval,
        # An idle worker blocks on the queue for worker_ttl - 15 seconds between
        # maintenance passes: keep that to the maintenance interval.
        worker_ttl=maintenance_interval + 15,
        default_result_ttl=RESULT_TTL,
        log_job_description=False,  # descriptions would show arguments
        **options,
    )
    worker.heartbeat_grace = heartbeat_grace
    return worker


def run(settings: Settings, *, burst: bool = False, **intervals: int) -> None:
    """Work the queue until stopped.

    The first SIGTERM (or Ctrl-C) lets the current job finish, then the worker exits; a
    second one stops it at once (the job is then retried, as for a killed worker).
    """
    configure_logging(settings.log_level)
    # The twilio library logs request URLs and headers at INFO: they hold phone numbers.
    logging.getLogger("twilio").setLevel(logging.WARNING)
    url = embedded.resolve_redis_url(settings.redis_url, settings.data_dir)
    connection = redis.Redis.from_url(url)
    worker = make_worker(connection, **intervals)
    log.info("worker starting", extra={"queue": QUEUE_NAME})
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
