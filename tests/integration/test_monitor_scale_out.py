"""Two monitors in one group, two models: each model is owned by the monitor of its
feedback partition (feedback is keyed by model), and its counts are exact there; when one
monitor stops, the other takes its partition and the model with it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from riverops.kafka.clients import make_producer
from riverops.kafka.topics import TopicCatalogue
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.schemas import events as ev
from riverops.settings import Settings

from .champion import register_champion
from .conftest import Running

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _feedback(model: str, index: int) -> ev.FeedbackEvent:
    label = index % 3 == 0
    return ev.FeedbackEvent(
        event_id=f"{model}-{index}", model=model, entity_id="c", event_time=T0 + timedelta(seconds=index),
        features={"x": float(index % 7)}, label=label, label_time=T0 + timedelta(seconds=index + 1),
        predictions=[ev.MadePrediction(version=1, variant="champion", prediction=label,
                                       scores={"True": 0.8 if label else 0.3, "False": 0.2 if label else 0.7})],
    )


def _send(settings: Settings, events: list[ev.FeedbackEvent]) -> dict[str, int]:
    """Produce feedback keyed by model as the joiner does; the partition of each model."""
    codec, topic = settings.codec(), TopicCatalogue.from_settings(settings).name("feedback")
    producer = make_producer(settings)
    partitions: dict[str, int] = {}

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        partitions[message.key().decode()] = message.partition()

    for event in events:
        producer.produce(topic, key=event.model, value=codec.encode("FeedbackEvent", event.to_avro()),
                         on_delivery=delivered)
    assert producer.flush(15) == 0
    return partitions


def _wait(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert predicate()


def test_two_monitors_own_one_model_each_and_hand_over(
    loop_settings: Settings, start_worker: Callable[..., Running], group_id: str,
) -> None:
    settings = Settings(**{**loop_settings.model_dump(), "monitor": {"emit_seconds": 0.5}})
    for model in ("fraud", "pricing"):
        register_champion(settings, model=model)

    def samples(stats: MonitorStats) -> dict[str, int]:
        return {row.model: row.samples for row in stats.status if row.variant == "champion"}

    # one monitor owns both models
    first, second = MonitorStats(), MonitorStats()
    a = start_worker(run_monitor, settings, first, group_id=group_id)
    partitions = _send(settings, [_feedback(m, i) for m in ("fraud", "pricing") for i in range(300)])
    assert partitions["fraud"] != partitions["pricing"]  # murmur2 of the names, 2 partitions
    _wait(lambda: samples(first) == {"fraud": 300, "pricing": 300})

    # a second joins: one model moves to it, and the first forgets that one
    start_worker(run_monitor, settings, second, group_id=group_id)
    _wait(lambda: bool(samples(second)) or len(samples(first)) < 2, timeout=30)
    _send(settings, [_feedback(m, 300 + i) for m in ("fraud", "pricing") for i in range(200)])
    _wait(lambda: len(samples(first)) == 1 and len(samples(second)) == 1
          and sum(samples(first).values()) + sum(samples(second).values()) == 500 + 200)
    kept, moved = next(iter(samples(first))), next(iter(samples(second)))
    print(f"\nfeedback partitions {partitions}; after the join the first keeps {kept}, the second owns {moved}")
    assert kept != moved
    assert samples(first) == {kept: 500}  # its windows went on
    assert samples(second) == {moved: 200}  # rebuilt from the offsets the first committed

    # the first leaves: the second takes its partition, from the committed offsets on
    a.stop.set()
    a.thread.join(30)
    _send(settings, [_feedback(m, 500 + i) for m in ("fraud", "pricing") for i in range(50)])
    _wait(lambda: samples(second) == {moved: 250, kept: 50})
