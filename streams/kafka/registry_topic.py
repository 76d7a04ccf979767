"""The registry topic: publish ModelVersion records, read them all, follow them live.

The registry topic has one partition, so the fold sees every change in one order.
Reading "to the end" relies on the high watermark the consumer learns while fetching
(the embedded broker answers fresh watermark queries wrongly for batched records).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from riverops.kafka.clients import at_end, make_consumer, make_producer, raise_if_refused
from riverops.kafka.topics import TopicCatalogue
from riverops.models.registry import Registry
from riverops.schemas.codec import Codec
from riverops.schemas.errors import DecodeError, RegistryError
from riverops.schemas.events import ModelVersion
from riverops.settings import Settings

__all__ = ["publish_records", "read_registry", "RegistryFollower", "choosing_version"]

log = logging.getLogger(__name__)


def publish_records(settings: Settings, records: Iterable[ModelVersion], *, timeout: float = 15.0) -> int:
    """Publish registry records in order and wait until every one is acknowledged."""
    codec = settings.codec()
    topic = TopicCatalogue.from_settings(settings).name("model-registry")
    producer = make_producer(settings, **{"linger.ms": 0})
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error)

    count = 0
    for record in records:
        producer.produce(
            topic, key=record.key, value=codec.encode("ModelVersion", record.to_avro()),
            on_delivery=on_delivery,
        )
        count += 1
    remaining = producer.flush(timeout)
    for error in failures:  # the first refusal, if any, says most
        raise_if_refused(error, f"writing {topic}")
    if remaining or failures:
        raise RegistryError(f"registry publish failed ({remaining} undelivered): {[str(e) for e in failures]}")
    return count


class RegistryFollower:
    """A group-less consumer of the registry partition, from the beginning, never committing."""

    def __init__(self, settings: Settings, *, codec: Codec | None = None) -> None:
        self.codec = codec or settings.codec()
        self.topic = TopicCatalogue.from_settings(settings).name("model-registry")
        self._consumer: Consumer = make_consumer(
            settings, f"registry-reader-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False}
        )
        self._partition = TopicPartition(self.topic, 0, OFFSET_BEGINNING)
        self._consumer.assign([self._partition])
        self.refused = 0

    def poll(self, *, max_records: int = 500, timeout: float = 0.0) -> list[ModelVersion]:
        """New registry records since the last call (undecodable ones are logged and skipped)."""
        out: list[ModelVersion] = []
        for message in self._consumer.consume(max_records, timeout):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    # librdkafka asks for the coordinator of the throwaway group.id it must
                    # have; this reader never joins it nor commits, so no group ACL is needed
                    continue
                raise_if_refused(error, f"reading {self.topic}")
                log.warning("registry consumer error: %s", error)
                continue
            try:
                out.append(ModelVersion.from_avro(self.codec.decode("ModelVersion", message.value())))
            except (DecodeError, ValueError) as exc:
                self.refused += 1
                log.error("refused registry record at offset %s: %s", message.offset(), exc)
        return out

    def caught_up(self) -> bool:
        """True when the position reached the high watermark learned while fetching."""
        return at_end(self._consumer, [(self.topic, 0)])

    def read_to_end(self, registry: Registry, *, timeout: float = 15.0) -> Registry:
        """Fold every record up to the end of the topic into ``registry``."""
        deadline = time.monotonic() + timeout
        idle_polls = 0
        while time.monotonic() < deadline:
            records = self.poll(timeout=0.2)
            registry.apply_all(records)
            if records:
                idle_polls = 0
                continue
            idle_polls += 1
            if self.caught_up() or idle_polls >= 10:
                return registry
        raise RegistryError(f"could not read the registry topic {self.topic} within {timeout}s")

    def close(self) -> None:
        self._consumer.close()


_VERSION_LOCK = threading.Lock()


@contextmanager
def choosing_version(registry: Registry, follower: RegistryFollower) -> Iterator[Registry]:
    """Hold this while a new version number is chosen and its records are published.

    Two writers that pick the next number from registries a moment out of date pick the
    same one, and the later record replaces the earlier (last record per key wins): the
    demo once lost a learner snapshot so, to a retrain that took its number. Inside one
    process (``worker all``, the demo) the lock makes the learner and the retrainer take
    turns, and the registry is read to the end first, so each sees the other's versions.
    Writers in separate processes only get the read to the end, which narrows the window
    to a record in flight: run the learner and the retrainer in one process (docs/operations.md).
    """
    with _VERSION_LOCK:
        follower.read_to_end(registry)
        yield registry


def read_registry(settings: Settings, *, timeout: float = 15.0) -> Registry:
    """The registry as of now, folded from the start of the topic in a fresh consumer."""
    follower = RegistryFollower(settings)
    try:
        return follower.read_to_end(Registry(), timeout=timeout)
    finally:
        follower.close()
