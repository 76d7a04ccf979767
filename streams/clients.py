"""Kafka clients built the riverops way from the settings.

Producers are idempotent with ``acks=all``; consumers never auto-commit and never
auto-store offsets: a processor stores an offset only after the output it caused was
delivered (at-least-once, made exact by idempotent processing downstream).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from streams.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["make_producer", "make_consumer", "next_offsets", "ok"]


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer that batches (``linger.ms=5``) and compresses with lz4."""
    config = settings.kafka_config(
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "batch.num.messages": 10_000,
            # Java's partitioner: producers in any language put an event_id on the same
            # partition, which the joins rely on
            "partitioner": "murmur2_random",
        }
    )
    config.update(overrides)
    return Producer(config)


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer in ``group_id`` that reads from the earliest offset and commits by hand."""
    config = settings.kafka_config(
        **{
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "session.timeout.ms": settings.session_timeout_ms,
            "enable.partition.eof": False,
        }
    )
    config.update(overrides)
    return Consumer(config)


def next_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """The offsets to commit after ``messages``: one past the last, per topic-partition."""
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            continue
        highest[(topic, partition)] = max(highest.get((topic, partition), -1), offset)
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]


def ok(message: Message) -> bool:
    """False for a consumer error event (logged); True for a record, tombstones included."""
    error = message.error()
    if error is None:
        return True
    log.warning("consumer error on %s[%s]: %s", message.topic(), message.partition(), error)
    return False
