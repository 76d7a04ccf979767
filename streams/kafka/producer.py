"""The producer SDK for services: typed, idempotent, failures surfaced.

Examples
--------
A service emitting features now and the label later (needs a running broker)::

    with EventProducer(Settings()) as producer:
        producer.send_features(event_id="tx-1", model="fraud", entity_id="card-7",
                               features={"amount": 42.0, "mcc": "5411"})
        ...
        producer.send_label(event_id="tx-1", model="fraud", label=False)
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from riverops.kafka.clients import make_producer, raise_if_refused
from riverops.kafka.topics import TopicCatalogue
from riverops.schemas.errors import RiveropsError
from riverops.schemas.events import FeatureEvent, LabelEvent, LabelValue, Scalar
from riverops.settings import Settings

__all__ = ["EventProducer", "DeliveryError"]


class DeliveryError(RiveropsError):
    """Records the broker did not acknowledge."""


class EventProducer:
    """Validates events with the pydantic contracts, encodes them, produces them keyed by
    event_id (acks=all, idempotent). Delivery failures are collected by the delivery
    callback and raised by :meth:`flush` (and on leaving the ``with`` block)."""

    def __init__(self, settings: Settings, **producer_config: Any) -> None:
        self._codec = settings.codec()
        catalogue = TopicCatalogue.from_settings(settings)
        self._features = catalogue.name("features")
        self._labels = catalogue.name("labels")
        self._producer = make_producer(settings, **producer_config)
        self.failures: list[tuple[str, Any]] = []  # (where, KafkaError)
        self.sent = 0
        self.delivered = 0

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failures.append((f"{message.topic()} key={message.key()!r}", error))

    def _produce(self, topic: str, key: str, payload: bytes, timestamp_ms: int) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, key=key, value=payload, timestamp=timestamp_ms, on_delivery=self._on_delivery
                )
                break
            except BufferError:  # local queue full: serve callbacks, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)
        self.sent += 1

    def send(self, event: FeatureEvent | LabelEvent) -> None:
        """Produce one validated event to its topic.

        The Kafka timestamp is the event's own time (event_time or label_time), so stream
        processors can keep time by the data, not by when they happen to read it.
        """
        if isinstance(event, FeatureEvent):
            topic, when = self._features, event.event_time
        else:
            topic, when = self._labels, event.label_time
        payload = self._codec.encode(event.schema_name, event.to_avro())
        self._produce(topic, event.event_id, payload, int(when.timestamp() * 1000))

    def send_features(
        self,
        *,
        event_id: str,
        model: str,
        entity_id: str,
        features: dict[str, Scalar],
        event_time: datetime | None = None,
    ) -> FeatureEvent:
        event = FeatureEvent(
            event_id=event_id, model=model, entity_id=entity_id, features=features,
            event_time=event_time or datetime.now(UTC),
        )
        self.send(event)
        return event

    def send_label(
        self, *, event_id: str, model: str, label: LabelValue, label_time: datetime | None = None
    ) -> LabelEvent:
        event = LabelEvent(
            event_id=event_id, model=model, label=label, label_time=label_time or datetime.now(UTC)
        )
        self.send(event)
        return event

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every record; raise DeliveryError if any was not acknowledged."""
        remaining = self._producer.flush(timeout)
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            for where, error in failures:  # the first refusal, if any, says most
                raise_if_refused(error, f"writing {where}")
            shown = [f"{where}: {error}" for where, error in failures[:5]]
            raise DeliveryError(f"{remaining} records still in flight, {len(failures)} failed: {shown}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._producer.flush(10)
