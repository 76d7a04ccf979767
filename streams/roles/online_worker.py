"""The ``online`` role: River's predict-then-learn over Kafka, one model object per model name.

Features and labels are consumed together and put back in time order by
:class:`~riverops.roles.timeorder.TimeOrderMerge` (the Kafka timestamp is the event or label
time), then handed to :class:`~riverops.roles.online.OnlineCore`, which predicts on features
(published as variant ``online``) and learns from labels. Fed a stream whose labels
follow their features by k events, its progressive metrics equal
``river.evaluate.progressive_val_score(..., delay=k)``.

Limits (documented, not hidden): the online model and its pending features live in
memory, so a restart starts again from the champion; offsets are committed only when the
merge is drained (idle input), so a crash replays from there; the online prediction of an
event is produced after its scorer predictions, and a joiner that already emitted the
event counts it as a late prediction.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TopicPartition

from riverops.kafka.clients import commit, make_consumer, ok
from riverops.kafka.deadletter import dead_letter
from riverops.kafka.outbox import Outbox
from riverops.kafka.registry_topic import RegistryFollower
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue
from riverops.modelops import model_loader
from riverops.models.registry import Registry
from riverops.roles.online import OnlineCore, OnlineInput
from riverops.roles.timeorder import TimeOrderMerge
from riverops.schemas.errors import DecodeError, InvalidEventError
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["OnlineStats", "run_online"]

log = logging.getLogger(__name__)


@dataclass
class OnlineStats:
    predictions: int = 0
    learned: int = 0
    rejected: int = 0
    assigned: bool = False
    cores: dict[str, OnlineCore] = field(default_factory=dict)


def run_online(
    settings: Settings,
    *,
    stop: threading.Event,
    group_id: str = "riverops-online",
    telemetry: Telemetry | None = None,
    stats: OnlineStats | None = None,
    idle_seconds: float = 1.0,
) -> OnlineStats:
    """Predict and learn online until ``stop`` is set."""
    stats = stats or OnlineStats()
    codec = settings.codec()
    catalogue = TopicCatalogue.from_settings(settings)
    features_topic, labels_topic = catalogue.name("features"), catalogue.name("labels")
    kinds = {features_topic: ("features", "FeatureEvent"), labels_topic: ("label", "LabelEvent")}
    load = model_loader(settings)
    registry = Registry()
    follower = RegistryFollower(settings, codec=codec)
    follower.read_to_end(registry)
    merge: TimeOrderMerge[OnlineInput] = TimeOrderMerge()
    consumer = make_consumer(settings, group_id, **{"partition.assignment.strategy": "range"})
    outbox = Outbox(settings, codec=codec)
    consumed: dict[tuple[str, int], int] = {}

    def on_assign(_consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            merge.register((tp.topic, tp.partition))
        stats.assigned = True

    def core_for(model: str) -> OnlineCore:
        core = stats.cores.get(model)
        if core is None:
            champion = registry.champion(model)
            if champion is None:
                raise InvalidEventError(f"unknown model {model!r} (no champion to start from)")
            core = OnlineCore(copy.deepcopy(load(champion)), version=champion.version, task=champion.task)
            stats.cores[model] = core
            log.info("online %s starts from champion v%s", model, champion.version)
        return core

    def process(released: list[OnlineInput]) -> None:
        dead: list[dict[str, Any]] = []
        predictions: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for item in released:
            try:
                result = core_for(str(item.record["model"])).process([item], predicted_at=now)
            except InvalidEventError as exc:
                dead.append(_letter(item, exc))
                continue
            predictions += result.predictions
            stats.learned += result.learned
            dead += [_letter(OnlineInput(item.kind, r.record, r.source), r.error) for r in result.rejected]
        outbox.send(catalogue.name("predictions"), "PredictionEvent", predictions, key="event_id",
                    time_field="event_time", headers=lambda _: [(PREDICTIONS_HEADER, b"1")])
        outbox.send(catalogue.name("deadletter"), "DeadLetter", dead, key="key")
        stats.predictions += len(predictions)
        stats.rejected += len(dead)
        if telemetry is not None:
            telemetry.count_out(catalogue.name("predictions"), len(predictions))

    consumer.subscribe([features_topic, labels_topic], on_assign=on_assign)
    last_input = time.monotonic()
    try:
        while not stop.is_set():
            registry.apply_all(follower.poll(timeout=0))
            messages = [m for m in consumer.consume(settings.batch_size, 0.2) if ok(m)]
            direct: list[dict[str, Any]] = []
            for message in messages:
                topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
                kind, schema = kinds[topic]
                consumed[(topic, partition)] = offset + 1
                try:
                    record = codec.decode(schema, message.value())
                except DecodeError as exc:
                    direct.append(dead_letter(message, exc, processor="online"))
                    continue
                merge.push((topic, partition), message.timestamp()[1], kind,  # type: ignore[arg-type]
                           OnlineInput(kind, record, (topic, partition, offset)),  # type: ignore[arg-type]
                           key=record["event_id"])
            if messages:
                last_input = time.monotonic()
            released = merge.release()
            idle = time.monotonic() - last_input >= idle_seconds
            if idle:
                released += merge.drain()
            process(released)
            outbox.send(catalogue.name("deadletter"), "DeadLetter", direct, key="key")
            outbox.flush("online predictions")
            if idle and consumed:
                commit(consumer, [TopicPartition(t, p, o) for (t, p), o in consumed.items()])
                consumed.clear()
    finally:
        outbox.close()
        consumer.close()
        follower.close()
    return stats


def _letter(item: OnlineInput, error: InvalidEventError) -> dict[str, Any]:
    topic, partition, offset = item.source or ("", 0, 0)
    return {
        "source_topic": topic, "source_partition": partition, "source_offset": offset,
        "key": str(item.record.get("event_id", "")).encode() or None, "value": None,
        "error_type": type(error).__name__, "reason": str(error), "processor": "online",
        "failed_at": datetime.now(UTC),
    }
