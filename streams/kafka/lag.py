"""Consumer lag per group, topic and partition, from the admin API.

Committed offsets come from ``list_consumer_group_offsets``. High watermarks come from
the watermark a consumer learns while fetching: the embedded broker answers fresh
watermark queries (ListOffsets, and so also ``OFFSET_END``) wrongly once records were
produced in batches, while fetch responses carry the right value. So a group-less probe
consumer keeps one position per partition at the end of the log, re-seeking there after
every sample, and reads the cached watermark. On Apache Kafka this is right too.

Examples
--------
>>> compute_lag({("g", "t", 0): 7, ("g", "t", 1): -1}, {("t", 0): 10, ("t", 1): 4})
[LagRow(group='g', topic='t', partition=0, committed=7, high=10, lag=3), \
LagRow(group='g', topic='t', partition=1, committed=-1, high=4, lag=4)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from riverops.kafka.clients import make_admin, make_consumer
from riverops.settings import Settings

__all__ = ["LagRow", "compute_lag", "LagProbe"]

log = logging.getLogger(__name__)

GroupPartition = tuple[str, str, int]
TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True)
class LagRow:
    group: str
    topic: str
    partition: int
    committed: int  # -1 when the group has not committed yet
    high: int
    lag: int


def compute_lag(
    committed: Mapping[GroupPartition, int], high: Mapping[TopicPartitionKey, int]
) -> list[LagRow]:
    """Lag rows for every committed position whose high watermark is known."""
    rows = []
    for (group, topic, partition), offset in sorted(committed.items()):
        top = high.get((topic, partition))
        if top is None or top < 0:
            continue
        start = offset if offset >= 0 else 0
        rows.append(LagRow(group, topic, partition, offset, top, max(top - start, 0)))
    return rows


class LagProbe:
    """Samples committed offsets of groups and high watermarks of their partitions."""

    def __init__(self, settings: Settings, *, group_prefix: str = "riverops", timeout: float = 10.0) -> None:
        self._admin = make_admin(settings)
        self._consumer = make_consumer(settings, "riverops-lag-probe", **{
            # never joins the group: assign() only, never commits
            "queued.max.messages.kbytes": 1024,
            "fetch.wait.max.ms": 50,
        })
        self._assigned: set[TopicPartitionKey] = set()
        self.group_prefix = group_prefix
        self.timeout = timeout

    def committed_offsets(self) -> dict[GroupPartition, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        listed = self._admin.list_consumer_groups(request_timeout=self.timeout).result()
        for error in listed.errors:  # e.g. a coordinator still loading after a restart
            log.warning("listing consumer groups: %s (their lag is missing from this sample)", error)
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(self.group_prefix)]
        groups = [g for g in groups if g != "riverops-lag-probe"]
        out: dict[GroupPartition, int] = {}
        for group in groups:
            futures = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout
            )
            for future in futures.values():
                try:
                    result = future.result()
                except KafkaException as exc:
                    log.warning("cannot read offsets of group %s: %s", group, exc)
                    continue
                for tp in result.topic_partitions:
                    out[(group, tp.topic, tp.partition)] = tp.offset
        return out

    def high_watermarks(self, partitions: Iterable[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        wanted = set(partitions)
        new = wanted - self._assigned
        if new:
            self._consumer.incremental_assign([TopicPartition(t, p, 0) for t, p in sorted(new)])
            self._assigned |= new
        # the fetch responses refresh the cached watermarks; a partition seen for the first
        # time needs its first fetch answered (a new TLS + SCRAM connection takes longer
        # than one short wait), so wait for those, up to the probe's timeout
        deadline = time.monotonic() + (self.timeout if new else 0.0)
        while True:
            self._consumer.consume(10_000, 0.3)
            out = self._cached_watermarks(wanted)
            if len(out) == len(wanted) or time.monotonic() >= deadline:
                break
        for (topic, partition), high in sorted(out.items()):
            try:  # park at the end so the next sample reads only what is new
                self._consumer.seek(TopicPartition(topic, partition, high))
            except KafkaException:
                pass
        return out

    def _cached_watermarks(self, wanted: set[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        out: dict[TopicPartitionKey, int] = {}
        for topic, partition in sorted(wanted):
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                out[(topic, partition)] = high
        return out

    def sample(self) -> list[LagRow]:
        self._admin.poll(0)  # serves the admin client's queued log lines and errors
        committed = self.committed_offsets()
        high = self.high_watermarks({(t, p) for _, t, p in committed})
        return compute_lag(committed, high)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> LagProbe:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
