"""What an operator's monitoring reads: the counts, and the queue as it is now."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from helpline.callbacks.queue import CallbackQueue
from helpline.infrastructure.errors import QueueError
from helpline.infrastructure.metrics import exposition


class QueueGauges(Collector):
    """The call back queue at the moment of a scrape, read from Redis."""

    def __init__(self, queue: CallbackQueue, clock: Callable[[], float]):
        self.queue = queue
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("helpline_redis_up", "Whether a scrape could read the queue")
        try:
            counts = self.queue.counts()
            oldest = self.queue.oldest_by_band()
        except QueueError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = self.clock()
        depth = GaugeMetricFamily(
            "helpline_queue_waiting", "Call back requests waiting, by band", labels=["band"]
        )
        wait = GaugeMetricFamily(
            "helpline_queue_oldest_wait_seconds",
            "How long the longest-waiting request in each band has waited (0: none wait)",
            labels=["band"],
        )
        for band, made in oldest.items():
            depth.add_metric([band], counts[band])
            wait.add_metric([band], max(0.0, now - made) if made is not None else 0.0)
        held = GaugeMetricFamily(
            "helpline_queue_held",
            "Requests a counsellor has (claimed) or that wait for a later time (scheduled)",
            labels=["state"],
        )
        for state in ("claimed", "scheduled"):
            held.add_metric([state], counts[state])
        yield from (depth, wait, held)


class Monitoring:
    """Renders the metrics page: every process's counts and the queue's gauges."""

    def __init__(self, queue: CallbackQueue, clock: Callable[[], float]):
        self.gauges = QueueGauges(queue, clock)

    def metrics(self) -> bytes:
        return exposition([self.gauges])
