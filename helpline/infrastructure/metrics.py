"""What the service counts, for Prometheus, and how a scrape reads it.

Counts are kept per process. Under gunicorn and `helpline worker` there are several
processes, so each role (the web's, the workers') writes its counts to files in a
directory of its own (prometheus_client's multiprocess mode, chosen by
PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported: see
helpline.infrastructure.multiprocess),
and a scrape of any web process adds up every file of every role on the machine.

Every label takes its value from a small closed set (routes, statuses, channels, kinds,
reasons): never a phone number, a message, or a request or job id.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

from helpline.infrastructure.multiprocess import MULTIPROCESS_ENV, ROLES

WEBHOOK_REQUESTS = Counter(
    "helpline_webhook_requests",
    "Twilio webhooks answered, by route and HTTP status",
    ["route", "status"],
)
WEBHOOK_SECONDS = Histogram(
    "helpline_webhook_seconds",
    "Time to answer a Twilio webhook, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FAILSAFE_ANSWERS = Counter(
    "helpline_failsafe_answers",
    "Webhooks answered with the fail-safe (the safety essentials only), by route",
    ["route"],
)
REJECTED_SIGNATURES = Counter(
    "helpline_rejected_signatures", "Webhooks refused for a missing or bad signature", ["route"]
)
OPT_OUTS = Counter(
    "helpline_opt_outs",
    "Opt-outs (out) and opt-ins (in) by text, by channel",
    ["channel", "change"],
)
CALLBACK_REQUESTS = Counter(
    "helpline_callback_requests",
    "New call back requests, by channel and priority",
    ["channel", "priority"],
)
CALLBACKS_NOT_QUEUED = Counter(
    "helpline_callbacks_not_queued",
    "Call back requests the caller was told could not be taken, by reason",
    ["reason"],
)
TEXTS = Counter(
    "helpline_texts",
    "Texts about requests (confirm, missed, expired, alert), by channel and how they ended",
    ["kind", "channel", "result", "reason"],
)
RATE_LIMITED = Counter(
    "helpline_rate_limited",
    "Texts and calls over a caller's limit, answered with the safety essentials only",
    ["channel"],
)
CHECKINS = Counter("helpline_checkins", "Check-in sessions, by what happened", ["event"])
SURVEYS = Counter("helpline_surveys", "Follow-up surveys, by what happened", ["event"])
JOBS = Counter("helpline_jobs", "Worker jobs, by job and how they ended", ["job", "outcome"])


def multiprocess() -> bool:
    """Whether this process writes its counts to files (else they live in memory): fixed
    when prometheus_client was first imported, whatever the environment says since."""
    return values.ValueClass is not values.MutexValue


class _AllRoles(Collector):
    """Every count every process of every role wrote under the metrics directory."""

    def __init__(self, directory: Path):
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        files = sorted(
            name for role in ROLES for name in glob.glob(str(self.directory / role / "*.db"))
        )
        return MultiProcessCollector.merge(files, accumulate=True)


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """Return the text a scrape reads: this machine's counts, and the extra collectors'."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        registry.register(_AllRoles(Path(os.environ[MULTIPROCESS_ENV]).parent))
    else:
        registry.register(_Everything())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


class _Everything(Collector):
    """This process's own counts (one process: tests, `helpline simulate`)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
