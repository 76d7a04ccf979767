"""The smallest real loop: features and late labels through Kafka, scored and learned online.

A placeholder for the full demo (scorer, joiner, monitor, learner, retrainer workers):
it already runs on the real broker, with the real codec and a real River model.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from schemas.errors import DecodeError
from streams.broker import EmbeddedBroker
from streams.clients import make_consumer, make_producer
from streams.settings import Settings
from streams.topics import TopicCatalogue, create_topics

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    events: int
    predictions: int
    labels_learned: int
    accuracy: float
    roc_auc: float
    seconds: float


def _stream(events: int, seed: int) -> list[tuple[dict[str, Any], bool]]:
    from river.datasets import synth

    return [(x, bool(y)) for x, y in synth.Agrawal(classification_function=2, seed=seed).take(events)]


def run_demo(
    *, events: int, seed: int, bootstrap_servers: str | None = None, console: Console | None = None
) -> DemoResult:
    """Produce ``events`` features and labels, then score and learn them from Kafka."""
    from river import compose, linear_model, metrics, preprocessing

    console = console or Console()
    broker = None if bootstrap_servers else EmbeddedBroker().start()
    try:
        servers = bootstrap_servers or (broker.bootstrap_servers if broker else "")
        settings = Settings(bootstrap_servers=servers, topic_prefix=f"demo-{uuid.uuid4().hex[:8]}.")
        catalogue = TopicCatalogue.from_settings(settings)
        create_topics(AdminClient(settings.kafka_config()), catalogue)
        console.print(f"broker {servers}, topics {settings.topic_prefix}*")
        codec = settings.codec()
        now = datetime.now(UTC)

        producer = make_producer(settings)
        for i, (x, y) in enumerate(_stream(events, seed)):
            event_id = f"e{i}"
            producer.produce(
                catalogue.name("features"),
                key=event_id,
                value=codec.encode("FeatureEvent", {
                    "event_id": event_id, "model": "demo", "entity_id": f"c{i % 97}",
                    "event_time": now, "features": x,
                }),
            )
            producer.produce(
                catalogue.name("labels"),
                key=event_id,
                value=codec.encode("LabelEvent", {
                    "event_id": event_id, "model": "demo", "label": y, "label_time": now,
                }),
            )
            producer.poll(0)
        producer.flush(30)

        model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
        accuracy, roc_auc = metrics.Accuracy(), metrics.ROCAUC()
        scored: dict[str, tuple[dict[str, Any], float]] = {}
        waiting_labels: dict[str, bool] = {}
        learned = predictions = 0
        consumer = make_consumer(settings, f"demo-{uuid.uuid4().hex[:8]}", **{"session.timeout.ms": 6000})
        consumer.subscribe([catalogue.name("features"), catalogue.name("labels")])
        start = time.monotonic()
        features_topic = catalogue.name("features")
        try:
            while learned < events and time.monotonic() - start < 120:
                for message in consumer.consume(1000, 0.5):
                    if message.error() is not None:
                        continue
                    if message.topic() == features_topic:
                        record = codec.decode("FeatureEvent", message.value())
                        proba = model.predict_proba_one(record["features"]).get(True, 0.0)
                        scored[record["event_id"]] = (record["features"], proba)
                        predictions += 1
                        event_id = record["event_id"]
                        if event_id in waiting_labels:
                            label = waiting_labels.pop(event_id)
                        else:
                            continue
                    else:
                        try:
                            record = codec.decode("LabelEvent", message.value())
                        except DecodeError:
                            continue
                        event_id, label = record["event_id"], bool(record["label"])
                        if event_id not in scored:
                            waiting_labels[event_id] = label
                            continue
                    x, proba = scored.pop(event_id)
                    accuracy.update(label, proba >= 0.5)
                    roc_auc.update(label, proba)
                    model.learn_one(x, label)
                    learned += 1
        finally:
            consumer.close()
        result = DemoResult(
            events=events, predictions=predictions, labels_learned=learned,
            accuracy=accuracy.get(), roc_auc=roc_auc.get(), seconds=time.monotonic() - start,
        )
    finally:
        if broker is not None:
            broker.stop()
    table = Table(title="riverops demo (minimal loop)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in (
        ("feature events", f"{result.events}"),
        ("predictions", f"{result.predictions}"),
        ("labels learned", f"{result.labels_learned}"),
        ("progressive accuracy", f"{result.accuracy:.2%}"),
        ("progressive ROC AUC", f"{result.roc_auc:.2%}"),
        ("seconds", f"{result.seconds:.1f}"),
    ):
        table.add_row(name, value)
    console.print(table)
    return result
