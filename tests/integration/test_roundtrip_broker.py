"""Every event type through a real Kafka-protocol broker, with both encodings."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient

from riverops.kafka.clients import make_consumer, make_producer
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.schemas import events as ev
from riverops.schemas.codec import make_codec
from riverops.settings import Settings

pytestmark = pytest.mark.tansu  # also in the Tansu smoke pass

ROLE_OF = {
    "FeatureEvent": "features", "PredictionEvent": "predictions", "LabelEvent": "labels",
    "FeedbackEvent": "feedback", "MetricsEvent": "metrics", "DriftEvent": "drift",
    "RetrainRequest": "retrain", "ModelVersion": "model-registry", "DeadLetter": "deadletter",
}


@pytest.mark.parametrize("encoding", ["single-object", "confluent"])
def test_every_event_type_round_trips_through_kafka(
    encoding: str, settings: Settings, group_id: str, sample_events: list[ev.Event]
) -> None:
    catalogue = TopicCatalogue.from_settings(settings)
    report = create_topics(AdminClient(settings.kafka_config()), catalogue)
    assert len(report.created) == len(catalogue.specs)
    codec = make_codec(encoding, registry_url=f"mock://{group_id}")  # type: ignore[arg-type]

    producer = make_producer(settings)
    for event in sample_events:
        producer.produce(
            catalogue.name(ROLE_OF[event.schema_name]),  # type: ignore[arg-type]
            key=event.schema_name.encode(),
            value=codec.encode(event.schema_name, event.to_avro()),
        )
    assert producer.flush(15) == 0

    consumer = make_consumer(settings, group_id)
    consumer.subscribe([spec.name for spec in catalogue])
    received: dict[str, ev.Event] = {}
    deadline = time.monotonic() + 30
    try:
        while len(received) < len(sample_events) and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                assert message.error() is None, message.error()
                name = message.key().decode()
                received[name] = ev.EVENT_TYPES[name].from_avro(codec.decode(name, message.value()))
    finally:
        consumer.close()
    assert received == {event.schema_name: event for event in sample_events}
