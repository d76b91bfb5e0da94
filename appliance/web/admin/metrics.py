"""Prometheus metrics of the admin port (prometheus-client, own registry, read at scrape time).

Bus words and errors per source, mode and air/ground, passengers connected and bytes served,
outbox depth per stream, journal commit latency (histogram), disk use. Values are read from the
live counters when scraped; the outbox depth query runs in a worker thread with its own connection.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from ...avionics.chain import AvionicsChain
from ...modes.policy import Mode
from ...store.models import outbox
from ...store.writer import COMMIT_BUCKETS_S, WriterStats
from ..passenger.traffic import PassengerTraffic

__all__ = ["ApplianceCollector", "make_metrics"]

_ERROR_KINDS = ("parity_errors", "crc_errors", "garbage_bytes", "unknown_labels", "decode_errors",
                "bad_frames", "no_computed_data", "out_of_range", "card_time_jumps")


def outbox_depth(reader: Engine) -> dict[str, tuple[int, int]]:
    """Unacknowledged outbox records per stream: (count, payload bytes)."""
    q = (select(outbox.c.stream, func.count(), func.coalesce(func.sum(func.length(outbox.c.payload)), 0))
         .where(outbox.c.acked.is_(None)).group_by(outbox.c.stream))
    with reader.connect() as conn:
        return {s: (int(n), int(b)) for s, n, b in conn.execute(q).all()}


class ApplianceCollector(Collector):
    """Reads the appliance's counters at scrape time."""

    def __init__(self, chain: AvionicsChain, writer: WriterStats, traffic: PassengerTraffic | None,
                 data_dir: Path) -> None:
        """Watch these live objects; ``depth`` is refreshed before each scrape."""
        self.chain = chain
        self.writer = writer
        self.traffic = traffic
        self.data_dir = data_dir
        self.depth: dict[str, tuple[int, int]] = {}

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        words = CounterMetricFamily("appliance_bus_words", "ARINC words received", labels=["source"])
        errors = CounterMetricFamily("appliance_bus_errors", "Bad input by kind",
                                     labels=["source", "kind"])
        for name, dec in self.chain.decoders.items():
            words.add_metric([name], dec.stats.words)
            for kind in _ERROR_KINDS:
                errors.add_metric([name, kind], getattr(dec.stats, kind))
        yield words
        yield errors
        failed = CounterMetricFamily("appliance_subscriber_errors",
                                     "Exceptions raised by event subscribers (caught, logged)",
                                     labels=["bus"])
        for bus in (self.chain.events, self.chain.ticks):
            failed.add_metric([bus.name], bus.errors)
        yield failed
        bad_pos = CounterMetricFamily("appliance_implausible_positions",
                                      "Positions flagged implausible (held back from map and track)",
                                      labels=["rule"])
        for rule in ("speed", "track"):
            bad_pos.add_metric([rule], self.chain.position.by_rule.get(rule, 0))
        yield bad_pos
        mode = GaugeMetricFamily("appliance_mode", "Current mode (1 for the current one)",
                                 labels=["mode"])
        for m in Mode:
            mode.add_metric([str(m)], 1.0 if self.chain.mode is m else 0.0)
        yield mode
        ag = GaugeMetricFamily("appliance_air_ground", "Air/ground state (1 for the current one)",
                               labels=["state"])
        for s in ("unknown", "ground", "air"):
            ag.add_metric([s], 1.0 if str(self.chain.ag.state) == s else 0.0)
        yield ag
        if self.traffic is not None:
            yield GaugeMetricFamily("appliance_passengers_connected",
                                    "Passenger devices seen in the last 5 minutes",
                                    value=self.traffic.connected())
            yield CounterMetricFamily("appliance_passenger_bytes_served",
                                      "Response body bytes sent to passengers",
                                      value=self.traffic.bytes_served)
        depth = GaugeMetricFamily("appliance_outbox_depth", "Unacknowledged outbox records",
                                  labels=["stream"])
        size = GaugeMetricFamily("appliance_outbox_bytes", "Unacknowledged outbox payload bytes",
                                 labels=["stream"])
        for stream, (n, b) in sorted(self.depth.items()):
            depth.add_metric([stream], n)
            size.add_metric([stream], b)
        yield depth
        yield size
        w = self.writer
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, COMMIT_BUCKETS_S), "+Inf"), w.commit_buckets,
                                strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily("appliance_journal_commit_seconds",
                                    "Journal commit (fsync) duration", buckets=buckets,
                                    sum_value=w.commit_s_sum)
        try:
            du = shutil.disk_usage(self.data_dir)
        except OSError:
            return
        yield GaugeMetricFamily("appliance_disk_used_bytes", "Data partition used", value=du.used)
        yield GaugeMetricFamily("appliance_disk_free_bytes", "Data partition free", value=du.free)


def make_metrics(collector: ApplianceCollector, reader: Engine,
                 *extra: Collector) -> Callable[[], Awaitable[bytes]]:
    """An async function producing the exposition text (outbox depth read in a worker thread).

    ``extra``: more collectors (the cabin network's gate).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    for c in extra:
        registry.register(c)

    async def metrics() -> bytes:
        collector.depth = await run_in_threadpool(outbox_depth, reader)
        return generate_latest(registry)

    return metrics
