"""Lag from the admin API is produced minus committed, exactly, on Apache Kafka.

A topic of five partitions gets a known number of records on each (counted from the
delivery reports), two groups commit known offsets (one with ``commit(offsets=...)``, one
by consuming and committing what it read), and every LagProbe sample must give, per
partition, the committed offset, the high watermark = records delivered there, and
lag = delivered - committed; again after more records and more commits. A partition
with a committed offset of 0 has the whole partition as lag, an empty one none.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverops.kafka.clients import commit, make_consumer, make_producer, next_offsets
from riverops.kafka.lag import LagProbe, LagRow
from riverops.settings import Settings

from ..conftest import ENGINE

pytestmark = [
    pytest.mark.faults,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        ENGINE != "kafka" and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        reason="needs Apache Kafka's ListOffsets/OffsetFetch (the Tansu pass runs only -m tansu)",
    ),
]
PARTITIONS = 5


def _produce(settings: Settings, topic: str, counts: dict[int, int], delivered: Counter[int]) -> None:
    """``counts[p]`` records to partition p; ``delivered`` counts the delivery reports."""
    producer = make_producer(settings)
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)
        else:
            delivered[message.partition()] += 1  # type: ignore[index]

    for partition, count in counts.items():
        for i in range(count):
            producer.produce(topic, key=f"k{partition}-{i}", value=b"x" * 20, partition=partition,
                             on_delivery=on_delivery)
            producer.poll(0)
    assert producer.flush(30) == 0 and not failures, failures


def _commit_offsets(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit exactly ``offsets`` for ``group`` (an assigned consumer, not a group member)."""
    consumer = make_consumer(settings, group)
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in offsets.items()])
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                        asynchronous=False)
    finally:
        consumer.close()


def _consume_and_commit(settings: Settings, group: str, topic: str, partition: int, count: int) -> int:
    """Read ``count`` more records of one partition as ``group`` and commit one past the last."""
    consumer = make_consumer(settings, group)
    try:
        committed = consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
        consumer.assign([TopicPartition(topic, partition, committed if committed >= 0 else OFFSET_BEGINNING)])
        messages: list[Message] = []
        while len(messages) < count:
            messages += [m for m in consumer.consume(count - len(messages), 5) if m.error() is None]
        assert commit(consumer, next_offsets(messages))
        return messages[-1].offset() + 1  # type: ignore[operator]
    finally:
        consumer.close()


def _rows(probe: LagProbe, topic: str) -> dict[tuple[str, int], LagRow]:
    return {(r.group, r.partition): r for r in probe.sample() if r.topic == topic}


def _check(probe: LagProbe, topic: str, committed: dict[str, dict[int, int]],
           delivered: Counter[int]) -> dict[tuple[str, int], LagRow]:
    """One sample: exactly one row per committed partition, high = delivered, lag = the rest."""
    rows = _rows(probe, topic)
    got = {key: (row.committed, row.high, row.lag) for key, row in rows.items()}
    want = {(group, p): (offset, delivered[p], delivered[p] - offset)
            for group, offsets in committed.items() for p, offset in offsets.items()}
    assert got == want
    return rows


def test_lag_is_delivered_minus_committed_exactly(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}lag"
    admin = AdminClient(settings.kafka_config())
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(15)
    prefix = f"lag-{uuid.uuid4().hex[:8]}-"
    explicit, consuming = f"{prefix}explicit", f"{prefix}consuming"
    delivered: Counter[int] = Counter()

    # p0 some read, p1 all read, p2 empty and committed 0, p3 committed 0 (all lag),
    # p4 never committed by anyone
    _produce(settings, topic, {0: 120, 1: 75, 3: 33, 4: 20}, delivered)
    assert delivered == {0: 120, 1: 75, 3: 33, 4: 20}
    committed = {explicit: {0: 50, 1: 75, 2: 0, 3: 0}, consuming: {}}
    _commit_offsets(settings, explicit, topic, committed[explicit])
    committed[consuming][1] = _consume_and_commit(settings, consuming, topic, 1, 40)
    assert committed[consuming][1] == 40

    with LagProbe(settings, group_prefix=prefix) as probe:
        first = _check(probe, topic, committed, delivered)
        # the probe reports the partitions a group committed; p4 (no commit) is not a row
        assert all(p != 4 for _g, p in first)
        assert first[(explicit, 3)].lag == 33 and first[(explicit, 2)].lag == 0
        _check(probe, topic, committed, delivered)  # a second sample, nothing changed: the same

        # more records (also on the empty partition), more commits, a consumer going on
        _produce(settings, topic, {0: 30, 2: 10, 3: 7, 4: 5}, delivered)
        committed[explicit] |= {0: 150, 3: 20}
        _commit_offsets(settings, explicit, topic, {0: 150, 3: 20})
        committed[consuming][1] = _consume_and_commit(settings, consuming, topic, 1, 35)
        assert committed[consuming][1] == 75
        second = _check(probe, topic, committed, delivered)
        assert second[(explicit, 0)].lag == 0 and second[(explicit, 2)].lag == 10
        assert second[(consuming, 1)].lag == 0

        # the probe's watermark agrees with a fresh ListOffsets (Kafka answers it right)
        reader = make_consumer(settings, f"{prefix}watermarks")
        try:
            fresh = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                     for p in range(PARTITIONS)}
        finally:
            reader.close()
        assert fresh == {p: delivered[p] for p in range(PARTITIONS)}
    print(f"\ndelivered per partition {dict(sorted(delivered.items()))}; rows "
          f"{sorted((g.removeprefix(prefix), p, r.committed, r.high, r.lag) for (g, p), r in second.items())}")
