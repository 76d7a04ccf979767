"""The learner on the real broker commits only what a published snapshot holds, and
dead-letters feedback with a NaN feature instead of learning from it.

99 good records and one with a NaN: nothing is due (99 < every_samples=100), so nothing
is committed although every record was read; one more good record makes a snapshot due,
it is published as a candidate with the 100 samples, and then the group's offsets reach
the end of the topic."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import TopicPartition
from river.datasets import synth

from riverops.kafka.clients import make_consumer
from riverops.kafka.outbox import Outbox
from riverops.kafka.registry_topic import read_registry
from riverops.kafka.topics import TopicCatalogue
from riverops.roles.learner import LearnerStats, run_learner
from riverops.sections import LearnerSettings
from riverops.settings import Settings

from .champion import register_champion
from .conftest import read_topic

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _send(settings: Settings, rows: list[tuple[int, dict[str, Any], Any]]) -> None:
    outbox = Outbox(settings)
    try:
        outbox.send(TopicCatalogue.from_settings(settings).name("feedback"), "FeedbackEvent", [
            {"event_id": f"e{i}", "model": "fraud", "entity_id": "c", "event_time": T0 + timedelta(seconds=i),
             "features": x, "label": bool(y), "label_time": T0 + timedelta(seconds=i + 1), "predictions": []}
            for i, x, y in rows], key="model")
        outbox.flush("feedback")
    finally:
        outbox.close()


def _committed(settings: Settings, group: str) -> int:
    """The sum of the group's committed offsets on the feedback topic (0 where none)."""
    topic = TopicCatalogue.from_settings(settings).name("feedback")
    consumer = make_consumer(settings, group)
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(settings.partitions)],
                                   timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in found)


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_offsets_wait_for_a_snapshot_and_nan_is_dead_lettered(
        loop_settings: Settings, start_worker: Any) -> None:
    settings = loop_settings.model_copy(update={"learner": LearnerSettings(every_samples=100,
                                                                          every_seconds=3600)})
    register_champion(settings)
    rows = [(i, x, y) for i, (x, y) in enumerate(synth.Agrawal(classification_function=0, seed=4).take(101))]
    rows[40] = (40, {**rows[40][1], "salary": math.nan}, rows[40][2])
    group = f"riverops-t-{uuid.uuid4().hex[:6]}"
    learner = start_worker(run_learner, settings, LearnerStats(), group_id=group)
    _send(settings, rows[:100])

    assert _wait(lambda: learner.stats.learned == 99 and learner.stats.dead_letters == 1, 60), learner.stats
    time.sleep(2)  # several commit rounds pass: none may store an offset
    assert learner.stats.snapshots == 0 and _committed(settings, group) == 0

    _send(settings, rows[100:])
    assert _wait(lambda: _committed(settings, group) == 101, 60), (learner.stats, _committed(settings, group))
    assert learner.stats.snapshots == 1
    snapshots = [v for v in read_registry(settings).versions("fraud") if v.changed_by == "learner"]
    assert [(v.stage, v.lineage.samples, v.lineage.parent) for v in snapshots] == [("candidate", 100, 1)]
    letters = read_topic(settings, "deadletter", "DeadLetter", expected=1, settle=0.5)
    assert [(letter["processor"], letter["error_type"]) for letter in letters] == [
        ("learner", "InvalidEventError")]
    assert "not a finite number" in letters[0]["reason"]
