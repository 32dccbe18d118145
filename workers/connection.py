"""The workers' Redis client: a command waits for Redis to come back rather than fail."""

from __future__ import annotations

import logging

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from helpline.application.composition import connect_redis
from helpline.application.config import Settings

log = logging.getLogger(__name__)

# Longest gap, in seconds, between attempts to reach Redis while it is away.
REDIS_RETRY_CAP = 2.0
# Failed attempts to reach Redis between two log lines saying it is still away.
REDIS_RETRY_LOG_EVERY = 30


class _UntilRedisAnswers(ExponentialBackoff):
    """Growing gaps between attempts to reach Redis, with a log line when it goes away."""

    def compute(self, failures: int) -> float:
        if failures == 1 or failures % REDIS_RETRY_LOG_EVERY == 0:
            log.warning(
                "redis unreachable; the worker retries until it answers",
                extra={"attempts": failures},
            )
        return float(super().compute(failures))


def connect(settings: Settings) -> redis.Redis:
    """Return a client for the workers: a command waits for Redis rather than fail.

    redis-py gives up on a command after about 5 seconds of retries by default; a
    worker would then stop. Commands that time out or lose their connection (Redis
    restarting, loading its data, failing over, or a demoted master's READONLY) are
    sent again until Redis answers.
    """
    retry = Retry(_UntilRedisAnswers(cap=REDIS_RETRY_CAP, base=0.05), retries=-1)
    return connect_redis(settings, retry=retry)
