"""The joiner's Kafka shell: consume features, predictions and labels, emit feedback.

Partition ``p`` of the three input topics goes to the same worker (range assignment over
topics with one partition count), and one :class:`~riverops.roles.joiner.JoinCore` per ``p``
holds that partition's state. After every batch the outputs are produced and delivered;
every ``checkpoint_seconds`` each core's snapshot is written atomically to the state
directory and its ``replay_from`` offsets are committed. On (re)assignment a core is
restored from its snapshot and the consumer seeks to the snapshot's positions, so a
kill -9 loses nothing. Events emitted between the last checkpoint and a crash are emitted
again after the restart: feedback is at-least-once, and its consumers (monitor, learner)
drop repeated event ids.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from riverops.kafka.clients import commit, make_consumer, ok
from riverops.kafka.deadletter import dead_letter
from riverops.kafka.outbox import Outbox
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue
from riverops.roles.joiner import JoinCore, JoinStats
from riverops.schemas.errors import DecodeError, InvalidEventError
from riverops.settings import Settings
from riverops.statefile import write_atomically
from riverops.telemetry import Telemetry

__all__ = ["JoinerStats", "run_joiner", "checkpoint_path"]

log = logging.getLogger(__name__)


@dataclass
class JoinerStats:
    batches: int = 0
    consumed: int = 0
    feedback: int = 0
    dead_letters: int = 0
    checkpoints: int = 0
    restored: int = 0
    ignored_checkpoints: int = 0
    assigned: bool = False
    cores: dict[int, JoinStats] | None = None


def checkpoint_path(settings: Settings, group_id: str, partition: int) -> Path:
    return settings.state_dir / group_id / f"partition-{partition}.snapshot"


def _cut_runs(messages: list[Any], predictions_topic: str) -> bool:
    """True when a batch ends inside an event's run of predictions on some partition.

    The scorer produces the predictions of one event back to back with a header saying
    how many there are; the batch is extended until every run is whole, so the feedback
    of an event carries all its predictions.
    """
    tails: dict[int, tuple[Any, int, int]] = {}  # partition -> (event key, seen, expected)
    for message in messages:
        if message.topic() != predictions_topic:
            continue
        expected = 1
        for name, value in message.headers() or ():
            if name == PREDICTIONS_HEADER and value:
                expected = int(value)
        key, partition = message.key(), message.partition()
        last = tails.get(partition)
        seen = last[1] + 1 if last is not None and last[0] == key else 1
        tails[partition] = (key, seen, expected)
    return any(seen < expected for _, seen, expected in tails.values())


def run_joiner(
    settings: Settings,
    *,
    stop: threading.Event,
    group_id: str = "riverops-joiner",
    stats: JoinerStats | None = None,
    telemetry: Telemetry | None = None,
) -> JoinerStats:
    """Join until ``stop`` is set; checkpoint on the way and on a clean stop."""
    stats = stats or JoinerStats()
    codec = settings.codec()
    catalogue = TopicCatalogue.from_settings(settings)
    kinds = {
        catalogue.name("features"): "features",
        catalogue.name("predictions"): "prediction",
        catalogue.name("labels"): "label",
    }
    feedback_topic, dead_topic = catalogue.name("feedback"), catalogue.name("deadletter")
    predictions_topic = catalogue.name("predictions")
    ttl_ms = int(settings.joiner.label_ttl_seconds * 1000)
    cores: dict[int, JoinCore] = {}
    consumer = make_consumer(settings, group_id, **{"partition.assignment.strategy": "range"})
    outbox = Outbox(settings, codec=codec)

    def load_core(partition: int) -> JoinCore:
        path = checkpoint_path(settings, group_id, partition)
        if path.exists():
            try:
                core = JoinCore.restore(path.read_bytes(), ttl_ms=ttl_ms, codec=codec)
                stats.restored += 1
                log.info("partition %s restored from %s at %s", partition, path, core.positions())
                return core
            except DecodeError as exc:
                log.error("unusable checkpoint %s (%s): replaying from committed offsets", path, exc)
        return JoinCore(ttl_ms=ttl_ms, codec=codec)

    def checkpoint(partitions: list[int]) -> None:
        commits = []
        for partition in partitions:
            core = cores[partition]
            write_atomically(checkpoint_path(settings, group_id, partition), core.snapshot())
            commits += [TopicPartition(t, p, o) for (t, p), o in core.replay_from().items()]
        commit(consumer, commits)  # if the group moved on, the snapshot still holds the positions
        stats.checkpoints += 1

    def on_assign(_consumer: Any, partitions: list[TopicPartition]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            log.warning("could not read committed offsets (%s): trusting the checkpoints", exc)
            committed = [TopicPartition(tp.topic, tp.partition, 0) for tp in partitions]
        known = {tp.partition for tp in committed if tp.offset >= 0}
        for partition in sorted({tp.partition for tp in partitions}):
            if partition not in cores and partition not in known:
                # a checkpoint without any committed offset belongs to another cluster or
                # to deleted topics: seeking to its positions would skip real data silently
                stale = checkpoint_path(settings, group_id, partition)
                if stale.exists():
                    log.warning("ignoring checkpoint %s: the group has no committed offsets "
                                "for partition %s (new cluster or recreated topics?)", stale, partition)
                    stats.ignored_checkpoints += 1
                cores[partition] = JoinCore(ttl_ms=ttl_ms, codec=codec)
            cores.setdefault(partition, load_core(partition))
        for tp in partitions:
            position = cores[tp.partition].positions().get((tp.topic, tp.partition))
            if position is not None:
                tp.offset = position
        consumer.assign(partitions)
        stats.assigned = True
        log.info("joiner assigned %s", [f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions])

    def on_revoke(_consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = sorted({tp.partition for tp in partitions} & set(cores))
        if gone:
            checkpoint(gone)
        for partition in gone:
            del cores[partition]

    consumer.subscribe(list(kinds), on_assign=on_assign, on_revoke=on_revoke)
    last_checkpoint = time.monotonic()
    try:
        while not stop.is_set():
            messages = [m for m in consumer.consume(settings.batch_size, 0.2) if ok(m)]
            deadline = time.monotonic() + 2.0
            while _cut_runs(messages, predictions_topic) and time.monotonic() < deadline:
                messages += [m for m in consumer.consume(settings.batch_size, 0.1) if ok(m)]
            dead: list[dict[str, Any]] = []
            touched: set[int] = set()
            for message in messages:
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                key = message.key()
                assert topic is not None and partition is not None and offset is not None
                core = cores.get(partition)
                if core is None:
                    continue  # revoked meanwhile: the new owner will read it
                if not key:
                    dead.append(dead_letter(message, InvalidEventError("record without an event_id key"),
                                            processor="joiner"))
                    continue
                event_id = key.decode(errors="replace") if isinstance(key, bytes) else key
                _kind, when = message.timestamp()
                core.add(kinds[topic], event_id, message.value(), when, (topic, partition, offset))  # type: ignore[arg-type]
                touched.add(partition)
            feedback: list[dict[str, Any]] = []
            for partition in sorted(touched):
                result = cores[partition].flush()
                feedback += result.feedback
                dead += result.dead_letters
            outbox.send(feedback_topic, "FeedbackEvent", feedback, key="model")
            outbox.send(dead_topic, "DeadLetter", dead, key="key")
            outbox.flush("feedback")
            stats.batches += bool(messages)
            stats.consumed += len(messages)
            stats.feedback += len(feedback)
            stats.dead_letters += len(dead)
            stats.cores = {p: c.stats() for p, c in cores.items()}
            if telemetry is not None and messages:
                for topic in kinds:
                    telemetry.count_in(topic, sum(1 for m in messages if m.topic() == topic))
                telemetry.count_out(feedback_topic, len(feedback))
                telemetry.set_pending(
                    items=sum(c.pending for c in stats.cores.values()),
                    nbytes=sum(c.pending_bytes for c in stats.cores.values()),
                )
                for letter in dead:
                    telemetry.count_dead_letter(letter["source_topic"], letter["error_type"])
            if cores and time.monotonic() - last_checkpoint >= settings.joiner.checkpoint_seconds:
                checkpoint(sorted(cores))
                last_checkpoint = time.monotonic()
        if cores:
            checkpoint(sorted(cores))
    finally:
        outbox.close()
        consumer.close()
    return stats
