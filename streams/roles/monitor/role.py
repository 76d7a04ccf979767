"""The monitor as a worker-runtime role: feedback in; metrics, drift alarms and /metrics gauges out.

The rolling windows live in memory: after a restart they refill from the feedback that
follows the committed offsets (the monitor is not a system of record; the metrics topic
is). Repeated feedback (the joiner under at-least-once) is dropped by the core's dedupe.

Scale-out: feedback is keyed by model, so all of a model's feedback is on one partition
(Kafka's murmur2 of the model name, modulo the partition count) and the monitor that owns
that partition owns the model: its windows, alarms and metrics. Monitors in one group
split the models by partition; when a rebalance takes a partition away for good the
monitor forgets the models it saw there, and the new owner rebuilds their windows from
the committed offsets on. (After an aborted transaction the runtime rewinds: the
re-read feedback is dropped by the dedupe, so counts stay exact; metrics computed in
the aborted interval are emitted again at the next tick, and a drift alarm raised in it,
which the detectors will not raise again, is sent again in the next transaction:
``kept_on_abort``.)

Each model's task comes from its champion in the registry (followed live), not from the
first label seen: one label of the wrong type ("maybe" for a binary model) arriving
first would otherwise turn the model's metrics multiclass for good, where it must be
dead-lettered. Every knob is in ``settings.monitor`` (:class:`~riverops.sections.MonitorSettings`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TopicPartition

from riverops.roles.monitor.core import KeyStatus, MonitorCore
from riverops.runtime import Context, Input, Offsets, Outputs, RoleSpec, run
from riverops.schemas.errors import InvalidEventError
from riverops.schemas.events import ModelVersion
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["MonitorStats", "MonitorRole", "run_monitor"]


@dataclass
class MonitorStats:
    """Counts of the monitor and its last status rows, for tests, the status view and logs."""

    batches: int = 0
    feedback: int = 0
    """Decoded feedback records handled (refused ones included; undecodable ones are only
    in ``dead_letters``)."""
    duplicates: int = 0
    """Repeated feedback the core dropped."""
    drift_events: int = 0
    metrics_events: int = 0
    dead_letters: int = 0
    assigned: bool = False
    status: list[KeyStatus] = field(default_factory=list)
    """Every key's values as of the last metrics emitted (and when the role stopped)."""


class MonitorRole(RoleSpec):
    """Feedback folded into a :class:`MonitorCore`; drift alarms as they are raised, metrics
    events and gauges every ``settings.monitor.emit_seconds``."""

    name = "monitor"
    inputs = ("feedback",)
    follows_registry = True
    latency_stage = "monitor"
    kept_on_abort = ("drift",)  # its detectors are not rolled back (see the module docstring)

    def __init__(self, settings: Settings, *, stats: MonitorStats | None = None) -> None:
        self.stats: MonitorStats = stats or MonitorStats()
        self.core = MonitorCore.from_settings(settings.monitor)
        self.emit_seconds = settings.monitor.emit_seconds
        self._last_emit = time.monotonic()
        self._partition_of: dict[str, tuple[str, int]] = {}  # model -> where its feedback is
        self._revoked: set[tuple[str, int]] = set()

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        self._learn_tasks()
        self._last_emit = time.monotonic()

    def on_registry(self, updates: list[ModelVersion]) -> None:
        self._learn_tasks()

    def _learn_tasks(self) -> None:
        registry = self.ctx.registry
        for model in registry.models:
            champion = registry.champion(model)
            if champion is not None:
                self.core.tasks.setdefault(model, champion.task)  # the first task known wins

    def handle(self, batch: list[Input], out: Outputs) -> None:
        sources = {id(item.value): item.message for item in batch}
        refused: set[int] = set()

        def on_invalid(record: Mapping[str, Any], error: InvalidEventError) -> None:
            refused.add(id(record))
            out.reject(sources[id(record)], error)

        records = [item.value for item in batch]
        for item in batch:
            self._partition_of[item.value["model"]] = (item.message.topic() or "", item.message.partition() or 0)
        drift = self.core.update(records, on_invalid=on_invalid)
        out.add("drift", drift)
        telemetry = self.ctx.telemetry
        if telemetry is not None:
            telemetry.count_drift(drift)
            delays: dict[str, list[float]] = {}
            for record in records:
                if id(record) not in refused:
                    delay = (record["label_time"] - record["event_time"]).total_seconds()
                    delays.setdefault(record["model"], []).append(max(delay, 0.0))
            telemetry.observe_label_delays(delays)
        self.stats.batches += 1
        self.stats.feedback += len(batch)
        self.stats.drift_events += len(drift)
        self.stats.duplicates = self.core.duplicates

    def tick(self, now: float, out: Outputs) -> None:
        if now - self._last_emit < self.emit_seconds:
            return
        self._last_emit = now
        wall = datetime.now(UTC)
        metrics = self.core.metrics_events(wall)
        out.add("metrics", metrics)
        self.stats.metrics_events += len(metrics)
        self.stats.status = self.core.status(wall)
        if self.ctx.telemetry is not None:
            self.ctx.telemetry.export_monitor(self.stats.status, self.core.data_drift_scores())

    def revoke(self, partitions: list[TopicPartition]) -> None:
        self._revoked |= {(tp.topic, tp.partition) for tp in partitions}

    def assign(self, partitions: list[TopicPartition], committed: Offsets | None) -> None:
        """Forget the models of revoked partitions that did not come back (a rebalance
        revokes every partition first, and most come back to the same monitor)."""
        gone = self._revoked - {(tp.topic, tp.partition) for tp in partitions}
        self._revoked = set()
        models = {model for model, where in self._partition_of.items() if where in gone}
        self.core.forget(models)
        for model in models:
            del self._partition_of[model]

    def state_sizes(self) -> Mapping[str, int]:
        return self.core.sizes()

    def stopped(self) -> None:
        self.stats.status = self.core.status()


def run_monitor(settings: Settings, *, stop: threading.Event, group_id: str = "riverops-monitor",
                stats: MonitorStats | None = None, telemetry: Telemetry | None = None) -> MonitorStats:
    """Monitor feedback until ``stop`` is set."""
    role = MonitorRole(settings, stats=stats)
    run(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    return role.stats
