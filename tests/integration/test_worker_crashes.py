"""kill -9 of the scorer, then the joiner, then the learner, each a real ``riverops worker``
process, at different points of a labelled stream, each restarted: no labelled event is
lost, the deduplicated feedback and the monitor's counts equal those of an uninterrupted
run, and the registry holds nothing but the champion and the learner's snapshots.

Size: 40,000 events (36,000 labelled) at 800 events/s. On the 2 shared cores of this
project's machines the four worker processes, the producer and the collector share the
CPU; 50 s of stream plus three restarts (each waits out the killed member's 6 s session)
and the drain keep the test near two minutes. The 100k of the issue is the same test
with N changed; it adds about a minute per 40k events.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from river import metrics
from river.datasets import synth

from riverops.kafka.clients import make_consumer, ok
from riverops.kafka.producer import EventProducer
from riverops.kafka.topics import TopicCatalogue
from riverops.roles.monitor import MonitorCore
from riverops.settings import Settings

from .champion import register_champion
from .conftest import read_topic
from .procs import start_worker_process, stop_process

pytestmark = [pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(300)]
N, RATE = 40_000, 1_200
ROLES = ("scorer", "joiner", "monitor", "learner")
# (role, which output's progress triggers the kill, fraction of the labelled events)
KILLS = (("scorer", "predictions", 0.2), ("joiner", "feedback", 0.45), ("learner", "feedback", 0.7))


class Collector:
    """Reads predictions and feedback as they come (a consumer of its own)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        catalogue = TopicCatalogue.from_settings(settings)
        self.topics = {catalogue.name("predictions"): "PredictionEvent", catalogue.name("feedback"): "FeedbackEvent"}
        self.records: dict[str, list[dict[str, Any]]] = {"PredictionEvent": [], "FeedbackEvent": []}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        codec = self.settings.codec()
        consumer = make_consumer(self.settings, f"collect-{uuid.uuid4().hex[:6]}")
        consumer.subscribe(list(self.topics))
        try:
            while not self.stop.is_set():
                for message in consumer.consume(1000, 0.2):
                    if message.error() is None:
                        schema = self.topics[message.topic()]
                        record = codec.decode(schema, message.value())
                        self.records[schema].append(record)
        finally:
            consumer.close()

    def count(self, schema: str) -> int:
        return len(self.records[schema])

    def distinct_feedback(self) -> set[str]:
        return {f["event_id"] for f in list(self.records["FeedbackEvent"])}


def _send(settings: Settings, labels: dict[str, bool]) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for i, (x, _y) in enumerate(synth.Agrawal(classification_function=0, seed=6).take(N)):
            eid, when = f"e{i}", t0 + timedelta(milliseconds=1000 * i / RATE)
            producer.send_features(event_id=eid, model="fraud", entity_id=f"c{i % 100}", features=x, event_time=when)
            if eid in labels:
                producer.send_label(event_id=eid, model="fraud", label=labels[eid], label_time=when + timedelta(seconds=2))
            ahead = (i + 1) / RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def test_kill_9_of_scorer_joiner_and_learner_loses_nothing(loop_settings: Settings, tmp_path: Path) -> None:
    settings = loop_settings
    register_champion(settings)
    champion_before = read_topic(settings, "model-registry", "ModelVersion", expected=1, settle=0)
    rows = list(synth.Agrawal(classification_function=0, seed=6).take(N))
    labels = {f"e{i}": bool(y) for i, (_x, y) in enumerate(rows) if i % 10 != 7}
    prefix = f"crash-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "workers.log"
    workers = {role: start_worker_process(settings, role, group_prefix=prefix, log=log) for role in ROLES}
    collector = Collector(settings)
    sender = threading.Thread(target=_send, args=(settings, labels))
    kills: list[str] = []
    try:
        time.sleep(8)  # the groups form (first join ~3 s with 6 s sessions)
        sender.start()
        for role, output, fraction in KILLS:
            schema = "PredictionEvent" if output == "predictions" else "FeedbackEvent"
            deadline = time.monotonic() + 120
            while collector.count(schema) < fraction * len(labels) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert workers[role].poll() is None, f"{role} exited by itself: {log.read_text()[-3000:]}"
            workers[role].send_signal(signal.SIGKILL)
            workers[role].wait(10)
            kills.append(f"{role} at {collector.count(schema)} {output}")
            workers[role] = start_worker_process(settings, role, group_prefix=prefix, log=log)
        sender.join()
        deadline = time.monotonic() + 120
        while collector.distinct_feedback() != set(labels) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # the monitor emits its metrics every 2 s
        for role, process in workers.items():
            assert process.poll() is None, f"{role} exited: {log.read_text()[-3000:]}"
    finally:
        codes = {role: stop_process(process) for role, process in workers.items()}
        collector.stop.set()
        collector.thread.join(10)
    assert codes == dict.fromkeys(ROLES, 0), log.read_text()[-3000:]

    predictions = collector.records["PredictionEvent"]
    feedback = collector.records["FeedbackEvent"]
    # nothing lost: every event scored, every labelled event joined, nothing else joined
    assert {p["event_id"] for p in predictions} == {f"e{i}" for i in range(N)}
    assert {f["event_id"] for f in feedback} == set(labels), "a labelled event was lost"
    # an uninterrupted run gives one champion prediction per event, the same on a re-score
    champion: dict[str, Any] = {}
    for p in predictions:
        assert p["variant"] == "champion" and p["version"] == 1
        assert champion.setdefault(p["event_id"], p["prediction"]) == p["prediction"]
    by_event: dict[str, dict[str, Any]] = {}
    for record in feedback:  # every copy of an event's feedback is the same record
        assert by_event.setdefault(record["event_id"], record) == record
    expected = metrics.Accuracy()
    for eid, label in labels.items():
        expected.update(label, champion[eid])
    monitor = MonitorCore(window_size=10**6, time_window=10**9, data_drift=None)
    monitor.update(feedback)
    (status,) = monitor.status()
    assert status.samples == len(labels)
    assert status.metrics["count"]["accuracy"] == pytest.approx(expected.get(), abs=1e-12)
    # the live monitor (never killed) counted each labelled event once
    live = read_topic(settings, "metrics", "MetricsEvent", expected=10**9, timeout=4, settle=0)
    assert max(m["samples"] for m in live if m["window_kind"] == "count") == len(labels)
    # the registry: the champion untouched, every other version a learner snapshot of it
    registry = read_topic(settings, "model-registry", "ModelVersion", expected=10**9, timeout=4, settle=0)
    assert registry[0] == champion_before[0]
    snapshots = registry[1:]
    assert snapshots, "the learner published no snapshot"
    print("\nsnapshots", [(r["version"], r["lineage"]["parent"], r["lineage"]["samples"],
                           [(d["partition"], d["start"], d["end"]) for d in r["lineage"]["training_data"]])
                          for r in snapshots])
    seen = {1}
    for record in snapshots:  # from the champion, or resumed from an earlier snapshot after a restart
        assert (record["stage"], record["changed_by"]) == ("candidate", "learner")
        assert record["lineage"]["parent"] in seen
        seen.add(record["version"])
    # and learned every feedback record once: a resumed learner goes on where its parent
    # ended; under exactly once only a transaction marker may lie between (no record)
    ends = {1: 0}
    offsets: set[int] | None = None
    for record in snapshots:
        (span,) = record["lineage"]["training_data"]  # the feedback topic's one partition in use
        parent_end = ends[record["lineage"]["parent"]]
        if span["start"] != parent_end:
            offsets = offsets if offsets is not None else _record_offsets(settings, span["topic"], span["partition"])
            skipped = [o for o in offsets if parent_end <= o < span["start"]]
            assert span["start"] > parent_end and not skipped, (record["version"], span, skipped)
        ends[record["version"]] = span["end"]
    assert [r["version"] for r in snapshots] == list(range(2, len(snapshots) + 2))
    assert Counter(r["stage"] for r in registry) == {"champion": 1, "candidate": len(snapshots)}
    print(f"\n{N} events, {len(labels)} labelled; kills: {kills}; predictions {len(predictions)} "
          f"(re-scored {len(predictions) - N}), feedback {len(feedback)} (repeated "
          f"{len(feedback) - len(labels)}), learner snapshots {len(snapshots)} "
          f"(parents {[r['lineage']['parent'] for r in snapshots]})")



def _record_offsets(settings: Settings, topic: str, partition: int) -> set[int]:
    """The offsets of the records of a partition, read committed (markers are not records)."""
    consumer = make_consumer(settings, f"offsets-{uuid.uuid4().hex[:6]}")
    tp = TopicPartition(topic, partition, OFFSET_BEGINNING)
    try:
        high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
        consumer.assign([tp])
        offsets: set[int] = set()
        deadline = time.monotonic() + 60
        while consumer.position([tp])[0].offset < high and time.monotonic() < deadline:
            offsets |= {m.offset() or 0 for m in consumer.consume(10_000, 0.5) if ok(m)}
        return offsets
    finally:
        consumer.close()
