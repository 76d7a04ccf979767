"""A restarted retrainer replays its feedback window from the topic instead of starting empty."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from river.datasets import synth

from riverops.kafka.clients import make_producer
from riverops.kafka.registry_topic import publish_records, read_registry
from riverops.kafka.topics import TopicCatalogue
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.retrainer import RetrainerStats, request_retrain, run_retrainer
from riverops.schemas.events import FeedbackEvent, MadePrediction
from riverops.sections import RetrainerSettings
from riverops.settings import Settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FEEDBACK = 2_000


def _champion(settings: Settings) -> None:
    model = get_spec("logreg").build(seed=1)
    rows = [({str(k): float(v) for k, v in x.items()}, bool(y))
            for x, y in synth.Sine(classification_function=0, seed=1).take(1_000)]
    learn_in_order(model, [x for x, _ in rows], [y for _, y in rows])
    publish_records(settings, register_trained(settings, Registry(), "sine", model, spec_name="logreg",
                                               stage="champion", by="test", reason="first", seed=1))


def _feedback(settings: Settings) -> None:
    codec, producer = settings.codec(), make_producer(settings)
    topic = TopicCatalogue.from_settings(settings).name("feedback")
    data = synth.Sine(classification_function=0, seed=2).take(FEEDBACK)
    for i, (x, y) in enumerate(data):
        event = FeedbackEvent(
            event_id=f"f{i}", model="sine", entity_id="e", event_time=T0 + timedelta(seconds=i),
            features={str(k): float(v) for k, v in x.items()}, label=bool(y),
            label_time=T0 + timedelta(seconds=i + 1),
            predictions=[MadePrediction(version=1, variant="champion", prediction=bool(y),
                                        scores={"True": 0.9 if y else 0.1, "False": 0.1 if y else 0.9})],
        )
        producer.produce(topic, key="sine", value=codec.encode("FeedbackEvent", event.to_avro()))
    assert producer.flush(15) == 0


def _run(settings: Settings, group: str, stats: RetrainerStats) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    knobs = settings.model_copy(update={"retrainer": RetrainerSettings(window_events=1_500,
                                                                       cooldown_seconds=0.0)})
    thread = threading.Thread(target=run_retrainer, args=(knobs,), daemon=True,
                              kwargs={"stop": stop, "stats": stats, "group_id": group})
    thread.start()
    deadline = time.monotonic() + 30
    while not stats.assigned and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats.assigned
    return stop, thread


def test_a_restarted_retrainer_replays_its_window_and_retrains(loop_settings: Settings) -> None:
    settings = loop_settings
    _champion(settings)
    _feedback(settings)
    group = f"retrainer-{uuid.uuid4().hex[:6]}"
    first = RetrainerStats()
    stop, thread = _run(settings, group, first)
    time.sleep(4)  # consumes and commits the feedback
    stop.set()
    thread.join(30)

    second = RetrainerStats()
    stop, thread = _run(settings, group, second)
    try:
        time.sleep(2)
        request_retrain(settings, "sine", reason="manual", by="test")
        deadline = time.monotonic() + 60
        while not (second.retrains or second.failed) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    assert second.retrains == 1 and second.failed == 0, second
    candidate = read_registry(settings).versions("sine")[-1]
    assert candidate.changed_by == "retrainer"
    # the window (1,500 events) came back from the topic: 80% of it learned, 20% held out
    assert candidate.lineage.samples == 1_200, candidate.lineage
    (span,) = candidate.lineage.training_data
    assert (span.start, span.end) == (FEEDBACK - 1_500, FEEDBACK)
