"""The exactly-once checker (riverops.audit) on a small stream written by hand: it finds
exactly the planted faults (a repeated prediction, a missing one, a repeated and a missing
feedback, a monitor count that does not match) and nothing in an aborted transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from riverops.audit import AuditReport, Tally, audit
from riverops.kafka.clients import make_producer
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.schemas import events as ev
from riverops.settings import Settings

from ..conftest import ENGINE, T0, make_sample_events

pytestmark = pytest.mark.skipif(ENGINE != "kafka", reason="read_committed needs Apache Kafka's transactions")


def _prediction(eid: str, *, version: int = 1, variant: str = "champion") -> dict[str, Any]:
    return ev.PredictionEvent(event_id=eid, model="fraud", version=version, variant=variant,  # type: ignore[arg-type]
                              prediction=True, scores={"True": 0.7}, latency=0.001, event_time=T0,
                              predicted_at=T0).to_avro()


def _feedback(eid: str) -> dict[str, Any]:
    made = [ev.MadePrediction(version=1, variant="champion", prediction=True, scores={"True": 0.7})]
    return ev.FeedbackEvent(event_id=eid, model="fraud", entity_id="c", event_time=T0, features={"x": 1.0},
                            label=True, label_time=T0, predictions=made).to_avro()


def _metrics(version: int, variant: str, samples: int) -> dict[str, Any]:
    return ev.MetricsEvent(model="fraud", version=version, variant=variant, window_kind="count",  # type: ignore[arg-type]
                           window_size=1000.0, samples=samples, metrics={"accuracy": 1.0},
                           emitted_at=datetime.now(UTC)).to_avro()


def _write(producer: Producer, settings: Settings, role: str, schema: str, records: list[dict[str, Any]],
           key: str) -> None:
    codec, name = settings.codec(), TopicCatalogue.from_settings(settings).name(role)  # type: ignore[arg-type]
    for record in records:
        producer.produce(name, key=str(record.get(key, key)), value=codec.encode(schema, record))


def test_the_checker_finds_exactly_the_planted_faults(settings: Settings) -> None:
    create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
    producer = make_producer(settings)
    ids = [f"e{i}" for i in range(6)]
    features = [ev.FeatureEvent(event_id=eid, model="fraud", entity_id="c", event_time=T0,
                                features={"x": 1.0}).to_avro() for eid in ids]
    _write(producer, settings, "features", "FeatureEvent", features, "event_id")
    # e3 scored twice (a repeat), e5 never (lost), e4 by a challenger (served once)
    served = [_prediction(e) for e in ("e0", "e1", "e2", "e3", "e3")] + [_prediction("e4", version=2, variant="challenger")]
    _write(producer, settings, "predictions", "PredictionEvent", served, "event_id")
    # a label for e0..e3, and one for an event that has no features (never joined)
    labels = [ev.LabelEvent(event_id=e, model="fraud", label=True, label_time=T0).to_avro()
              for e in ("e0", "e1", "e2", "e3", "nofeatures")]
    _write(producer, settings, "labels", "LabelEvent", labels, "event_id")
    # feedback: e1 repeated, e3 lost
    _write(producer, settings, "feedback", "FeedbackEvent", [_feedback(e) for e in ("e0", "e1", "e1", "e2")], "model")
    # the monitor's champion count grows to the 3 distinct outcomes; a challenger count it cannot have
    _write(producer, settings, "metrics", "MetricsEvent",
           [_metrics(1, "champion", 2), _metrics(1, "champion", 3), _metrics(2, "challenger", 4)], "model")
    version = next(e for e in make_sample_events() if isinstance(e, ev.ModelVersion)).to_avro()
    registry = [version | {"version": 1}, version | {"version": 1, "stage": "archived"}, version | {"version": 2}]
    _write(producer, settings, "model-registry", "ModelVersion", registry, "model")
    letter = next(e for e in make_sample_events() if isinstance(e, ev.DeadLetter)).to_avro()
    _write(producer, settings, "deadletter", "DeadLetter", [letter], "processor")
    assert producer.flush(30) == 0
    # what an aborted transaction wrote is not there for read_committed readers
    aborted = make_producer(settings, **{"transactional.id": f"audit-{uuid.uuid4().hex[:6]}"})
    aborted.init_transactions(30)
    aborted.begin_transaction()
    _write(aborted, settings, "predictions", "PredictionEvent", [_prediction("e5"), _prediction("e0")], "event_id")
    _write(aborted, settings, "feedback", "FeedbackEvent", [_feedback("e3"), _feedback("e0")], "model")
    aborted.flush(30)
    aborted.abort_transaction(30)

    report = audit(settings, timeout=30)
    assert isinstance(report, AuditReport)
    assert (report.features, report.feature_records, report.labelled) == (6, 6, 4)
    assert report.predictions == Tally(expected=6, once=4, lost=1, duplicated=1, surplus=1)
    assert report.variants == {"champion": 5, "challenger": 1}
    assert report.shadows is None
    assert report.feedback == Tally(expected=4, once=2, lost=1, duplicated=1, surplus=1)
    assert report.monitor == {("fraud", 1, "champion"): (3, 3), ("fraud", 2, "challenger"): (4, 0)}
    assert not report.monitor_exact and not report.exact
    assert report.registry == {("fraud", 1), ("fraud", 2)}
    assert report.dead_letters == 1
    assert report.unread == {} and report.undecodable == {}
    assert set(report.others) == {f"{settings.topic_prefix}drift", f"{settings.topic_prefix}retrain"}
    rows = report.markdown_rows()
    assert "| feedback | 4 | 2 | 1 | 1 (1) | NO |" in rows
    assert "| monitor samples fraud v1 champion | 3 | 3 | | | yes |" in rows
    assert report.markdown().count("\n") == len(rows) + 1


def test_a_clean_stream_is_exact(settings: Settings) -> None:
    create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
    producer = make_producer(settings)
    features = [ev.FeatureEvent(event_id=e, model="fraud", entity_id="c", event_time=T0,
                                features={"x": 1.0}).to_avro() for e in ("a", "b")]
    _write(producer, settings, "features", "FeatureEvent", features, "event_id")
    _write(producer, settings, "predictions", "PredictionEvent",
           [_prediction("a"), _prediction("b"), _prediction("a", version=3, variant="shadow"),
            _prediction("b", version=3, variant="shadow")], "event_id")
    _write(producer, settings, "labels", "LabelEvent",
           [ev.LabelEvent(event_id="a", model="fraud", label=True, label_time=T0).to_avro()], "event_id")
    _write(producer, settings, "feedback", "FeedbackEvent", [_feedback("a")], "model")
    _write(producer, settings, "metrics", "MetricsEvent", [_metrics(1, "champion", 1)], "model")
    assert producer.flush(30) == 0

    report = audit(settings, shadow_versions=[("fraud", 3)], timeout=30)
    assert report.exact, report.markdown()
    assert report.shadows == Tally(expected=2, once=2, lost=0, duplicated=0, surplus=0)
    # a shadow version that never scored is lost on every event
    missing = audit(settings, shadow_versions=[("fraud", 4)], timeout=30)
    assert missing.shadows == Tally(expected=2, once=0, lost=2, duplicated=0, surplus=0)
    assert not missing.exact
