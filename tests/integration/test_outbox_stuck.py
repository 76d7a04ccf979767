"""A transactional call that never returns is given up with its producer.

librdkafka's ``send_offsets_to_transaction`` ignores its timeout while the group
coordinator is away (librdkafka #5456, #5511); after a broker restart the scorer and the
joiner blocked in it for good, their transactions open, so read_committed readers saw
nothing past them. Here the call is made to block (the one stand-in in this test: the
broker, the producers and the consumer are real), and the outbox must abort the interval,
replace its producer under the same transactional id, and commit the next interval, with
nothing of the stuck one ever visible. A replacement the broker keeps refusing
(CONCURRENT_TRANSACTIONS, seen for over 80 s after a broker freeze) must not hold the
worker's partitions: the outbox gives up within the transaction timeout with ProducerLost."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from riverops.kafka import outbox as outbox_module
from riverops.kafka.clients import make_consumer
from riverops.kafka.outbox import ProducerLost, TransactionAborted, TransactionalOutbox
from riverops.settings import Settings

from ..conftest import ENGINE

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(ENGINE == "tansu", reason="the embedded broker has no transactions"),
]


class _BlockingOffsets:
    """The real producer, except that ``send_offsets_to_transaction`` blocks until released
    (as librdkafka's does while it waits for a coordinator it never finds again)."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.entered = threading.Event()
        self.release = threading.Event()

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.entered.set()
        self.release.wait()
        self._producer.send_offsets_to_transaction(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


def _read_committed(settings: Settings, topic: str, expected: int) -> list[bytes]:
    consumer = make_consumer(settings, f"read-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        idle = 0
        while idle < 3 and len(values) <= expected:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1
            elif message.error() is None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def test_a_send_offsets_call_that_never_returns_aborts_and_renews(settings: Settings) -> None:
    topic, source = f"{settings.topic_prefix}out", f"{settings.topic_prefix}in"
    admin = AdminClient(settings.kafka_config())
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (topic, source)]).values():
        future.result(30)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(settings, group)
    outbox = TransactionalOutbox(settings, transactional_id=f"{group}.stuck", timeout=2.0)
    stuck = _BlockingOffsets(outbox.producer)
    outbox.producer = stuck
    try:
        outbox.send_raw(topic, [(0, b"k", b"from the stuck interval")])
        with pytest.raises(TransactionAborted, match="did not return"):
            outbox.commit([TopicPartition(source, 0, 5)], consumer.consumer_group_metadata(), "test output")
        assert stuck.entered.is_set()
        assert outbox.renewals == 1 and outbox.producer is not stuck

        outbox.send_raw(topic, [(0, b"k", b"from the next interval")])
        outbox.commit([TopicPartition(source, 0, 7)], consumer.consumer_group_metadata(), "test output")

        assert _read_committed(settings, topic, expected=1) == [b"from the next interval"]
        (committed,) = consumer.committed([TopicPartition(source, 0)], timeout=10)
        assert committed.offset == 7
    finally:
        stuck.release.set()  # the old producer, fenced by now, refuses and its thread ends
        outbox.close()
        consumer.close()


class _RefusedInit:
    """A real producer whose ``init_transactions`` the broker keeps refusing, as it did
    while it still aborted the transaction of the producer given up."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.asked = 0

    def init_transactions(self, *_: Any) -> None:
        self.asked += 1
        raise KafkaException(KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "another concurrent operation "
                                        "on the same transaction was ongoing", retriable=True))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


def test_a_replacement_the_broker_keeps_refusing_stops_the_worker(settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    topic, source = f"{settings.topic_prefix}out", f"{settings.topic_prefix}in"
    admin = AdminClient(settings.kafka_config())
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in (topic, source)]).values():
        future.result(30)
    settings = settings.model_copy(update={"transaction_timeout_ms": 3_000})
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(settings, group)
    outbox = TransactionalOutbox(settings, transactional_id=f"{group}.refused", timeout=1.0)
    stuck = _BlockingOffsets(outbox.producer)
    outbox.producer = stuck
    refused: list[_RefusedInit] = []
    real_producer = outbox_module.make_producer

    def refused_producer(*args: Any, **kwargs: Any) -> Any:
        refused.append(_RefusedInit(real_producer(*args, **kwargs)))
        return refused[-1]

    monkeypatch.setattr(outbox_module, "make_producer", refused_producer)
    try:
        outbox.send_raw(topic, [(0, b"k", b"from the stuck interval")])
        with pytest.raises(ProducerLost, match="could not be replaced .*CONCURRENT|could not be replaced .*concurrent"):
            outbox.commit([TopicPartition(source, 0, 5)], consumer.consumer_group_metadata(), "test output")
        assert len(refused) == 1 and refused[0].asked > 1  # asked again while the bound allowed
    finally:
        stuck.release.set()
        outbox.close()
        consumer.close()
