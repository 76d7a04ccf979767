"""The joiner's state in a compacted changelog topic: Kafka Streams' state-store design.

Partition ``p`` of the changelog holds the state of input partition ``p``: one record per
event, keyed by its event id, holding the event's pending blob (``P`` + blob, see
:mod:`riverops.roles.joiner.state`), or that it was emitted (``D`` + stream time, to drop
repeats and late predictions), or a tombstone once it is forgotten; plus one header
record under the empty key (never an event id: the core refuses those) with the clock,
the consumed positions and the counts (``M`` + a snapshot without entries, see
:mod:`riverops.roles.joiner.snapshot`). The records of a commit interval are written in
the transaction of its feedback and offsets (exactly once), so the committed changelog
is always the state as of the committed offsets; or (at least once) flushed after the
feedback and before the offsets are committed, so a restored header is never behind the
committed offsets and never says an event was emitted whose feedback was not delivered.
Compaction keeps the last record per event.

Under at least once the records of an interval are not atomic: the header is written
last, after the interval's entries, as its commit mark. A joiner killed while it wrote its
first checkpoint leaves entries without any header; they are no state (the offsets of that
interval were never committed, so its inputs are read again: repeats, as at least once
allows). Refusing them, as before 2026-12-04, kept a restarted joiner from ever restoring
the partition (a kill -9 test's run, fresh-clone CI).

A partition assigned to any instance, on any host, is restored by reading its changelog
partition to the end (:func:`restore`), not by replaying the inputs back to the oldest
pending event. The topic is named after the joiner's group (``PREFIX<group>.join-state``,
so two joiner groups never share one), made by the joiner when missing, and must have
the partition count of the three inputs (:func:`ensure_changelog` refuses to start
otherwise, as Faust does).

Examples
--------
>>> records = encode_changes(1, [("e1", b"blob", None), ("e2", None, 7), ("e3", None, None)])
>>> [(p, k, v[:1] if v else v) for p, k, v in records]
[(1, b'e1', b'P'), (1, b'e2', b'D'), (1, b'e3', None)]
"""

from __future__ import annotations

import logging
import struct
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from riverops.kafka.clients import make_admin, make_consumer, ok
from riverops.kafka.outbox import RawRecord
from riverops.kafka.topics import TopicCatalogue
from riverops.roles.joiner.core import JoinCore
from riverops.roles.joiner.snapshot import SnapshotState, decode_snapshot, encode_snapshot
from riverops.roles.joiner.state import check_item, first_seen_of, refs_of
from riverops.schemas.errors import ConfigError, DecodeError, RiveropsError
from riverops.settings import Settings

__all__ = ["changelog_topic", "ensure_changelog", "encode_changes", "encode_header", "fold", "Folding",
           "restore", "Restored"]

log = logging.getLogger(__name__)

HEADER_KEY = b""
_PENDING, _DONE, _HEADER = b"P", b"D", b"M"
_TIME = struct.Struct("<q")


def changelog_topic(settings: Settings, group_id: str) -> str:
    return f"{settings.topic_prefix}{group_id}.join-state"


def ensure_changelog(settings: Settings, group_id: str, *, timeout: float = 15.0) -> str:
    """The changelog's name, after making it when missing (compacted, the inputs'
    partition count); ConfigError when the inputs and the changelog disagree on it."""
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    catalogue = TopicCatalogue.from_settings(settings)
    name = changelog_topic(settings, group_id)
    admin = make_admin(settings)
    inputs = [catalogue.name(role) for role in ("features", "predictions", "labels")]
    counts = _partition_counts(admin, [*inputs, name], timeout)
    missing = [topic for topic in inputs if topic not in counts]
    if missing:
        raise ConfigError(f"the joiner's input topics {missing} do not exist (riverops topics create)")
    if len({counts[topic] for topic in inputs}) > 1:
        raise ConfigError(f"the joiner needs one partition count on its inputs, found {counts}: "
                          "partition p of each is joined with partition p of the others")
    wanted = counts[inputs[0]]
    if name not in counts:
        config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        futures = admin.create_topics([NewTopic(name, wanted, settings.replication_factor, config=config)],
                                      request_timeout=timeout)
        try:
            futures[name].result(timeout=timeout)
            log.info("created the changelog %s (%d partitions)", name, wanted)
        except KafkaException as exc:
            if "already exists" not in str(exc).lower() and "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RiveropsError(f"cannot create the changelog {name}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while name not in (counts := _partition_counts(admin, [name], timeout)) and time.monotonic() < deadline:
            time.sleep(0.1)  # a new topic reaches the metadata a moment later
    if counts.get(name) != wanted:
        raise ConfigError(f"the changelog {name} has {counts.get(name)} partitions, its inputs {wanted}: "
                          "the state of partition p would be restored from the wrong place")
    return name


def _partition_counts(admin: object, topics: list[str], timeout: float) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout)  # type: ignore[attr-defined]
    return {name: len(found.partitions) for name, found in metadata.topics.items()
            if name in topics and found.error is None}


def encode_changes(partition: int, changes: Iterable[tuple[str, bytes | None, int | None]]) -> list[RawRecord]:
    """Changelog records of :meth:`JoinCore.changes` for ``partition``."""
    records: list[RawRecord] = []
    for event_id, blob, done_at in changes:
        key = event_id.encode()
        if blob is not None:
            records.append((partition, key, _PENDING + blob))
        elif done_at is not None:
            records.append((partition, key, _DONE + _TIME.pack(done_at)))
        else:
            records.append((partition, key, None))
    return records


def encode_header(partition: int, header: SnapshotState) -> RawRecord:
    """The header record (clock, positions, counts) of ``partition``."""
    return (partition, HEADER_KEY, _HEADER + encode_snapshot(header))


Entries = tuple[list[tuple[str, bytes | None]], list[tuple[str, int | None]]]
"""A chunk of changelog records as (pending entries, done entries) in log order, None
where an event's record says it is not (or no longer) there."""


def _decode(records: Iterable[tuple[bytes | None, bytes | None]]) -> tuple[SnapshotState | None, Entries, int]:
    """A chunk's last header, its entries and the highest topic-partition index a pending
    event names (-1: none); DecodeError on a record this module did not write."""
    header: SnapshotState | None = None
    pending: list[tuple[str, bytes | None]] = []
    done: list[tuple[str, int | None]] = []
    top = -1
    for key, value in records:
        if key is None:
            raise DecodeError("a changelog record without a key", raw=value or b"")
        if key == HEADER_KEY:
            if not value or value[:1] != _HEADER:
                raise DecodeError("the changelog header is not a header record", raw=value or b"")
            header = decode_snapshot(value[1:])
            continue
        event_id = key.decode()
        kind = value[:1] if value is not None else None
        if value is None:
            pending.append((event_id, None))
            done.append((event_id, None))
        elif kind == _PENDING:
            blob = value[1:]
            try:
                check_item(blob, 1 << 16)
            except (ValueError, struct.error) as exc:
                raise DecodeError(f"a corrupt pending event in the changelog: {exc}", raw=value) from exc
            top = max(top, max((tp for tp, _ in refs_of(blob)), default=-1))
            pending.append((event_id, blob))
            done.append((event_id, None))
        elif kind == _DONE and len(value) == 1 + _TIME.size:
            pending.append((event_id, None))
            done.append((event_id, _TIME.unpack_from(value, 1)[0]))
        else:
            raise DecodeError(f"unknown changelog record for {event_id!r}", raw=value)
    return header, (pending, done), top


def _check(header: SnapshotState | None, entries: int, top: int) -> SnapshotState | None:
    if header is None:
        if entries:  # at least once: a worker killed while its first checkpoint was written
            log.warning("%d changelog entries before any header (a joiner stopped while it wrote its "
                        "first checkpoint, whose offsets were therefore never committed): no state, the "
                        "inputs are joined again from the committed offsets (repeats possible)", entries)
        return None
    if top >= len(header.partitions):
        raise DecodeError(f"a corrupt pending event in the changelog: topic-partition index {top} "
                          f"of {len(header.partitions)}", raw=b"")
    return header


def fold(records: Iterable[tuple[bytes | None, bytes | None]]) -> SnapshotState | None:
    """The state a changelog partition's records describe, in memory (None: no header, no
    state); DecodeError on a record this module did not write."""
    header, (pending, done), top = _decode(records)
    header = _check(header, len(pending), top)
    if header is None:
        return None
    found: dict[str, bytes] = {}
    emitted: dict[str, int] = {}
    for (event_id, blob), (_, done_at) in zip(pending, done, strict=True):
        found.pop(event_id, None)
        emitted.pop(event_id, None)
        if blob is not None:
            found[event_id] = blob
        elif done_at is not None:
            emitted[event_id] = done_at
    header.pending = dict(sorted(found.items(), key=lambda item: first_seen_of(item[1])))
    header.done = dict(sorted(emitted.items(), key=lambda item: item[1]))
    return header


@dataclass
class Restored:
    """What :func:`restore` read: whether there was a state, records read, seconds taken."""

    found: bool
    records: int
    seconds: float


class Folding:
    """A changelog partition's records, a chunk at a time, into the new core ``into`` (a
    spilling core writes each chunk to its file: a state larger than memory restores in
    bounded memory); :meth:`finish` gives it the header."""

    def __init__(self, into: JoinCore) -> None:
        self.core = into
        self.records = 0
        self._header: SnapshotState | None = None
        self._entries = 0
        self._top = -1

    def add(self, chunk: list[tuple[bytes | None, bytes | None]]) -> None:
        header, (pending, done), top = _decode(chunk)
        self.core.absorb(pending, done)
        self._header, self._top = header or self._header, max(self._top, top)
        self.records += len(chunk)
        self._entries += len(pending)

    def finish(self) -> bool:
        """Resume the core at the last header; False: the changelog held no state."""
        header = _check(self._header, self._entries, self._top)
        if header is not None:
            self.core.resume(header)
        return header is not None


def restore(settings: Settings, topic: str, partition: int, into: JoinCore, *,
            timeout: float = 120.0) -> Restored:
    """Read changelog partition ``partition`` to its end into the new core ``into``
    (:class:`Folding`), read_committed, up to the log's end as a read_uncommitted reader
    sees it: a transaction still open (a dead owner's, until the broker aborts it) or
    committed but not yet marked is waited out, not left behind. A read_committed
    consumer's own watermark query answers the last stable offset, which stops before it:
    the restored state would then lag the committed offsets, and the events in between
    would be joined again."""
    started = time.monotonic()
    group = f"restore-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, partition, OFFSET_BEGINNING)
    probe = make_consumer(settings, group, **{"isolation.level": "read_uncommitted"})
    try:
        low, high = probe.get_watermark_offsets(tp, timeout=10, cached=False)
    finally:
        probe.close()
    consumer = make_consumer(settings, group, **{"fetch.max.bytes": 52428800})
    folding = Folding(into)
    try:
        if high > low:
            consumer.assign([tp])
            deadline = started + timeout
            while True:
                folding.add([(m.key(), m.value()) for m in consumer.consume(10_000, 0.5) if ok(m)])
                position = consumer.position([tp])[0].offset
                if position >= high:
                    break
                if time.monotonic() > deadline:
                    raise RiveropsError(f"could not read {topic}[{partition}] to offset {high} within "
                                        f"{timeout}s (at {position})")
    finally:
        consumer.close()
    found = folding.finish()
    return Restored(found, folding.records, time.monotonic() - started)
