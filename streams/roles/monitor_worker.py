"""The monitor's Kafka shell: feedback in; metrics, drift alarms and /metrics gauges out.

The rolling windows live in memory: after a restart they refill from the feedback that
follows the committed offsets (the monitor is not a system of record; the metrics topic
is). Repeated feedback (the joiner is at-least-once) is dropped by the core's dedupe.

Each model's task comes from its champion in the registry (followed live), not from the
first label seen: one label of the wrong type ("maybe" for a binary model) arriving
first would otherwise turn the model's metrics multiclass for good, where it must be
dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from riverops.kafka.clients import commit, make_consumer, next_offsets, ok
from riverops.kafka.deadletter import dead_letter
from riverops.kafka.outbox import Outbox
from riverops.kafka.registry_topic import RegistryFollower
from riverops.kafka.topics import TopicCatalogue
from riverops.models.registry import Registry
from riverops.roles.monitor import KeyStatus, MonitorCore
from riverops.schemas.errors import DecodeError
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["MonitorStats", "run_monitor"]

log = logging.getLogger(__name__)


@dataclass
class MonitorStats:
    batches: int = 0
    feedback: int = 0
    drift_events: int = 0
    metrics_events: int = 0
    dead_letters: int = 0
    assigned: bool = False
    status: list[KeyStatus] = field(default_factory=list)


def run_monitor(
    settings: Settings,
    *,
    stop: threading.Event,
    group_id: str = "riverops-monitor",
    telemetry: Telemetry | None = None,
    stats: MonitorStats | None = None,
    core: MonitorCore | None = None,
    emit_seconds: float = 2.0,
) -> MonitorStats:
    """Monitor until ``stop`` is set."""
    stats = stats or MonitorStats()
    core = core or MonitorCore()
    codec = settings.codec()
    catalogue = TopicCatalogue.from_settings(settings)
    feedback_topic = catalogue.name("feedback")
    registry = Registry()
    follower = RegistryFollower(settings, codec=codec)
    follower.read_to_end(registry)

    def learn_tasks() -> None:
        for model in registry.models:
            champion = registry.champion(model)
            if champion is not None:
                core.tasks.setdefault(model, champion.task)  # a task given to the core wins

    learn_tasks()
    consumer = make_consumer(settings, group_id)
    outbox = Outbox(settings, codec=codec)

    def on_assign(_consumer: Any, _partitions: Any) -> None:
        stats.assigned = True

    def produce(role: str, schema: str, records: list[dict[str, Any]], key: str = "model") -> None:
        topic = catalogue.name(role)  # type: ignore[arg-type]
        outbox.send(topic, schema, records, key=key)
        if telemetry is not None and records:
            telemetry.count_out(topic, len(records))

    def handle(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        started = time.perf_counter()
        dead: list[dict[str, Any]] = []
        decoded = codec.decode_many("FeedbackEvent", [m.value() for m in messages])
        records, sources = [], {}
        for message, item in zip(messages, decoded, strict=True):
            if isinstance(item, DecodeError):
                dead.append(dead_letter(message, item, processor="monitor"))
            else:
                records.append(item)
                sources[id(item)] = message

        def on_invalid(record: Any, error: Any) -> None:
            dead.append(dead_letter(sources[id(record)], error, processor="monitor"))

        drift = core.update(records, on_invalid=on_invalid)
        produce("drift", "DriftEvent", drift)
        produce("deadletter", "DeadLetter", dead, key="key")
        if telemetry is not None:
            telemetry.count_in(feedback_topic, len(messages))
            telemetry.count_drift(drift)
            for record in records:
                delay = (record["label_time"] - record["event_time"]).total_seconds()
                telemetry.observe_label_delay(record["model"], max(delay, 0.0))
            for letter in dead:
                telemetry.count_dead_letter(feedback_topic, letter["error_type"])
            telemetry.observe_latency("monitor", time.perf_counter() - started)
        return drift, dead

    consumer.subscribe([feedback_topic], on_assign=on_assign)
    last_emit = time.monotonic()
    try:
        while not stop.is_set():
            updates = follower.poll(timeout=0)
            if updates:
                registry.apply_all(updates)
                learn_tasks()
            messages = [m for m in consumer.consume(settings.batch_size, 0.2) if ok(m)]
            drift: list[dict[str, Any]] = []
            dead: list[dict[str, Any]] = []
            if messages:
                drift, dead = handle(messages)
            if time.monotonic() - last_emit >= emit_seconds:
                now = datetime.now(UTC)
                metrics = core.metrics_events(now)
                produce("metrics", "MetricsEvent", metrics)
                stats.metrics_events += len(metrics)
                stats.status = core.status(now)
                if telemetry is not None:
                    telemetry.export_monitor(stats.status, core.data_drift_scores())
                last_emit = time.monotonic()
            outbox.flush("monitor output")
            if messages:
                commit(consumer, next_offsets(messages))
                stats.batches += 1
                stats.feedback += len(messages)
                stats.drift_events += len(drift)
                stats.dead_letters += len(dead)
        stats.status = core.status()
    finally:
        outbox.close()
        consumer.close()
        follower.close()
    return stats
