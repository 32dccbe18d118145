"""The worker process: one RQ queue per process, JSON jobs, reliable dequeue."""

from __future__ import annotations

import logging

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from helpline import embedded
from helpline.config import Settings
from helpline.logs import configure_logging

log = logging.getLogger(__name__)

# One queue per worker process: with a single queue RQ moves each job atomically
# (BLMOVE) into an intermediate list, so a killed worker's job is found and retried.
QUEUE_NAME = "helpline"
# Seconds between RQ's housekeeping passes; also how soon an abandoned job is noticed.
MAINTENANCE_INTERVAL = 30


def queue(connection: redis.Redis) -> Queue:
    """Return the helpline's job queue (JSON serialised: jobs carry ids, never objects)."""
    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)


def run(settings: Settings, *, burst: bool = False) -> None:
    """Work the queue until stopped (SIGTERM finishes the current job first)."""
    configure_logging()
    url = embedded.resolve_redis_url(settings.redis_url, settings.data_dir)
    connection = redis.Redis.from_url(url)
    worker = Worker(
        [queue(connection)],
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL,
        log_job_description=False,  # descriptions would show arguments
    )
    log.info("worker starting", extra={"queue": QUEUE_NAME})
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
