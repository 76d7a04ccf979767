"""The output side of every processor: encode, produce, and know that it was delivered.

A processor sends a batch's outputs, then calls :meth:`Outbox.flush` before it commits
the offsets (or checkpoints the state) that the outputs reflect; flush raises when a
record was not acknowledged, so the worker stops instead of committing past lost output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from riverops.kafka.clients import make_producer, raise_if_refused
from riverops.schemas.codec import Codec
from riverops.schemas.errors import RiveropsError
from riverops.settings import Settings

__all__ = ["Outbox"]

Headers = list[tuple[str, bytes]]


class Outbox:
    """Encodes records with the codec and produces them; collects delivery failures."""

    def __init__(self, settings: Settings, *, codec: Codec | None = None, **producer_config: Any) -> None:
        self.codec = codec or settings.codec()
        self.producer = make_producer(settings, **producer_config)
        self.failures: list[Any] = []  # KafkaError of each record not delivered
        self.sent = 0

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failures.append(error)

    def send(
        self,
        topic: str,
        schema: str,
        records: Sequence[dict[str, Any]],
        *,
        key: str,
        time_field: str | None = None,
        headers: Callable[[dict[str, Any]], Headers] | None = None,
    ) -> None:
        """Produce ``records`` keyed by their ``key`` field; ``time_field`` (a datetime)
        becomes the Kafka timestamp, so downstream stream time is event time."""
        for record, payload in zip(records, self.codec.encode_many(schema, records), strict=True):
            extra: dict[str, Any] = {}
            if time_field is not None:
                extra["timestamp"] = int(record[time_field].timestamp() * 1000)
            if headers is not None:
                extra["headers"] = headers(record)
            self.producer.produce(topic, key=record[key], value=payload, on_delivery=self._on_delivery, **extra)
        self.sent += len(records)
        self.producer.poll(0)

    def flush(self, what: str, *, timeout: float = 30.0) -> None:
        """Wait for every record; RiveropsError naming ``what`` if any was not delivered
        (AuthorizationError when the broker refused the write)."""
        remaining = self.producer.flush(timeout)
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            for error in failures:  # the first refusal, if any, says most
                raise_if_refused(error, f"writing {what}")
            raise RiveropsError(
                f"{what} not delivered ({remaining} in flight, {len(failures)} failed: "
                f"{[str(e) for e in failures[:3]]}); "
                "offsets not committed"
            )

    def close(self) -> None:
        self.producer.flush(10)
