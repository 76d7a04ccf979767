"""The lag role: samples consumer lag per group, topic and partition into /metrics."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from riverops.kafka.lag import LagProbe, LagRow
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["LagStats", "run_lag"]

log = logging.getLogger(__name__)


@dataclass
class LagStats:
    samples: int = 0
    rows: list[LagRow] = field(default_factory=list)


def run_lag(
    settings: Settings,
    *,
    stop: threading.Event,
    group_id: str = "riverops-lag",
    telemetry: Telemetry | None = None,
    stats: LagStats | None = None,
) -> LagStats:
    """Sample the lag of the groups named ``settings.group_prefix``* every
    ``settings.lag.every_seconds`` until ``stop`` is set."""
    stats = stats or LagStats()
    every_seconds = settings.lag.every_seconds
    with LagProbe(settings, group_prefix=settings.group_prefix) as probe:
        while not stop.is_set():
            stats.rows = probe.sample()
            stats.samples += 1
            if telemetry is not None:
                for row in stats.rows:
                    telemetry.set_lag(row.group, row.topic, row.partition, row.lag)
            stop.wait(every_seconds)
    return stats
