"""The joiner on the worker runtime: features, predictions and labels in, feedback out.

Partition ``p`` of the three input topics goes to the same worker (range assignment over
topics with one partition count), and one :class:`~riverops.roles.joiner.core.JoinCore`
per ``p`` holds that partition's state.

The state lives in a compacted changelog topic (:mod:`riverops.roles.joiner.changelog`):
at each commit (each ``settings.joiner.checkpoint_seconds``, on a revoke, on a clean stop)
the events that changed since the last one and a header per partition (clock, consumed
positions, counts) go out (:meth:`JoinerRole.changelog`), so a checkpoint costs the
changes, not the state. A partition assigned to this worker, on any host, is restored by
reading its changelog partition, and the consumer starts at the header's positions.

- Exactly once (the default on Apache Kafka): the changes are in the transaction of the
  feedback and offsets, so the restored state is exactly the one of the committed offsets.
- At least once (the embedded broker): the runtime flushes the feedback, then the changes,
  then commits the offsets. Events emitted between the last header and a crash are emitted
  again after the restart (their consumers, monitor and learner, drop repeated event ids);
  none is lost, since no change record says an event was emitted before its feedback was
  delivered.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from confluent_kafka import Message, TopicPartition

from riverops.kafka.deadletter import SourceRecord
from riverops.kafka.outbox import RawRecord
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue
from riverops.roles.joiner.changelog import encode_changes, encode_header, ensure_changelog, restore
from riverops.roles.joiner.core import JoinCore, JoinStats
from riverops.roles.joiner.state import Kind
from riverops.runtime import Context, Input, Offsets, Outputs, RoleSpec, run
from riverops.schemas.codec import Codec
from riverops.schemas.errors import InvalidEventError
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["JoinerStats", "JoinerRole", "run_joiner"]

log = logging.getLogger(__name__)


@dataclass
class JoinerStats:
    """Counts of the joiner, for tests, the status view and logs; ``cores`` holds each
    partition's gauges and outcome counts after the last batch."""

    batches: int = 0
    consumed: int = 0
    feedback: int = 0
    dead_letters: int = 0
    checkpoints: int = 0  # commits that wrote the changes of at least one partition
    restored: int = 0
    restored_records: int = 0  # changelog records read by restores
    restore_seconds: float = 0.0
    assigned: bool = False
    cores: dict[int, JoinStats] | None = None


def _cut_runs(messages: Sequence[Message], predictions_topic: str) -> bool:
    """True when a batch ends inside an event's run of predictions on some partition.

    The scorer produces the predictions of one event back to back with a header saying
    how many there are; the batch is extended until every run is whole, so the feedback
    of an event carries all its predictions.
    """
    tails: dict[int | None, tuple[Any, int, int]] = {}  # partition -> (event key, seen, expected)
    for message in messages:
        if message.topic() != predictions_topic:
            continue
        expected, headers = 1, message.headers() or []
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            if name == PREDICTIONS_HEADER and value:
                expected = int(value)
        key, partition = message.key(), message.partition()
        last = tails.get(partition)
        seen = last[1] + 1 if last is not None and last[0] == key else 1
        tails[partition] = (key, seen, expected)
    return any(seen < expected for _, seen, expected in tails.values())


class JoinerRole(RoleSpec):
    """One :class:`JoinCore` per assigned partition, its changes in the changelog at every commit.

    Records stay encoded (``decode = False``): the core checks each payload's header on
    arrival and decodes an event once, when it is complete. What the core refuses (bad
    payloads, orphan labels, events whose parts do not match) and records without a key
    are dead-lettered through the runtime.
    """

    name = "joiner"
    inputs = ("features", "predictions", "labels")
    decode = False
    consumer_config: Mapping[str, Any] = MappingProxyType({"partition.assignment.strategy": "range"})
    latency_stage = "joiner"

    def __init__(self, settings: Settings, *, group_id: str, stats: JoinerStats | None = None) -> None:
        self.stats: JoinerStats = stats or JoinerStats()
        self.commit_seconds = settings.joiner.checkpoint_seconds
        self.read_on_seconds = settings.joiner.complete_runs_seconds
        self._settings, self._group_id = settings, group_id
        self._ttl_ms = int(settings.joiner.label_ttl_seconds * 1000)
        catalogue = TopicCatalogue.from_settings(settings)
        self._kinds: dict[str, Kind] = {
            catalogue.name("features"): "features",
            catalogue.name("predictions"): "prediction",
            catalogue.name("labels"): "label",
        }
        self._predictions = catalogue.name("predictions")
        self._codec: Codec | None = None
        self._cores: dict[int, JoinCore] = {}
        self._unsaved: set[int] = set()  # partitions whose core changed since the last commit
        self._changelog = ""  # its name, once start() made sure it exists

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        self._codec = ctx.codec
        self._changelog = ensure_changelog(self._settings, self._group_id)

    # -- rebalances ----------------------------------------------------------------------

    def assign(self, partitions: list[TopicPartition], committed: Offsets | None) -> None:
        """Restore each new partition's core from its changelog partition and start each
        topic at the restored position (none restored: at its committed offset)."""
        for partition in sorted({tp.partition for tp in partitions} - self._cores.keys()):
            self._cores[partition] = self._restore(self._changelog, partition)
        for tp in partitions:
            position = self._cores[tp.partition].positions().get((tp.topic, tp.partition))
            if position is not None:
                tp.offset = position
        self._report()

    def _restore(self, topic: str, partition: int) -> JoinCore:
        core = self._new_core(partition)
        try:
            restored = restore(self._settings, topic, partition, core)
        except BaseException:
            core.close()
            raise
        self.stats.restored_records += restored.records
        self.stats.restore_seconds += restored.seconds
        if not restored.found:
            if restored.records:  # entries read without a header are no state: a fresh core
                core.close()
                return self._new_core(partition)
            return core
        self.stats.restored += 1
        stats = core.stats()
        log.info("partition %s restored from %s in %.2fs (%d records, %d pending, %d of them on disk) at %s",
                 partition, topic, restored.seconds, restored.records, stats.pending, stats.pending_on_disk,
                 core.positions())
        return core

    def _new_core(self, partition: int) -> JoinCore:
        return JoinCore(ttl_ms=self._ttl_ms, codec=self._codec, encoded=True, **self._spill(partition))

    def _spill(self, partition: int) -> dict[str, Any]:
        """Where partition's core spills beyond ``joiner.memory_events`` (0: never)."""
        events = self._settings.joiner.memory_events
        if not events:
            return {}
        path = self._settings.state_dir / self._group_id / f"partition-{partition}.spill.sqlite"
        return {"spill_to": path, "memory_events": events}

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """Drop the cores of revoked partitions: the runtime committed them just before
        (their changes are in the changelog), and the new owner restores from there."""
        for partition in {tp.partition for tp in partitions}:
            core = self._cores.pop(partition, None)
            if core is not None:
                core.close()
            self._unsaved.discard(partition)
        self._report()

    # -- batches -------------------------------------------------------------------------

    def incomplete(self, batch: list[Message]) -> bool:
        return _cut_runs(batch, self._predictions)

    def handle(self, batch: list[Input], out: Outputs) -> None:
        # ``out`` arrives with the runtime's refusals of this batch (records over the size
        # limits): the cores' positions move past them too, so no restart refuses them again
        refused: list[SourceRecord] = [s for s, _ in out.rejected if s.topic() in self._kinds]
        consumed = len(batch) + len(refused)
        touched: set[int] = set()
        for item in batch:
            topic, partition, offset = item.source
            core = self._cores.get(partition)
            if core is None:
                continue  # revoked meanwhile: the new owner reads it
            message = item.message
            key = message.key()
            if not key:
                out.reject(message, InvalidEventError("record without an event_id key"))
                refused.append(message)
                continue
            event_id = key.decode(errors="replace") if isinstance(key, bytes) else key
            core.add(self._kinds[topic], event_id, item.value, message.timestamp()[1], item.source)
            touched.add(partition)
        for source in sorted(refused, key=lambda s: (s.topic() or "", s.partition() or 0, s.offset() or 0)):
            partition = source.partition() or 0
            if (core := self._cores.get(partition)) is not None:
                core.skip((source.topic() or "", partition, source.offset() or 0))
                touched.add(partition)
        feedback: list[tuple[str, bytes]] = []
        expired: Counter[Kind] = Counter()
        for partition in sorted(touched):
            result = self._cores[partition].flush()
            feedback += result.encoded
            for origin, error in result.rejected:
                out.reject(origin, error)
            expired.update(result.expired)
        self._unsaved |= touched
        out.add_encoded("feedback", feedback)
        self.stats.batches += 1
        self.stats.consumed += consumed
        self.stats.feedback += len(feedback)
        self._report(expired)

    def _report(self, expired: Mapping[Kind, int] | None = None) -> None:
        """Refresh the per-partition stats and the joiner's gauges; count expirations."""
        self.stats.cores = {partition: core.stats() for partition, core in self._cores.items()}
        telemetry = self.ctx.telemetry
        if telemetry is None:
            return
        cores = self.stats.cores.values()
        telemetry.set_pending(items=sum(c.pending for c in cores), nbytes=sum(c.pending_bytes for c in cores))
        for kind, count in (expired or {}).items():
            if count:
                telemetry.count_expired(kind, count)

    def state_sizes(self) -> Mapping[str, int]:
        cores = (self.stats.cores or {}).values()
        on_disk = sum(c.pending_on_disk for c in cores)
        done_on_disk = sum(c.done_on_disk for c in cores)
        return {"join_pending_memory": sum(c.pending for c in cores) - on_disk, "join_pending_disk": on_disk,
                "join_done_memory": sum(c.done for c in cores) - done_on_disk, "join_done_disk": done_on_disk}

    # -- commits -------------------------------------------------------------------------

    def changelog(self) -> Mapping[str, Sequence[RawRecord]]:
        """Each changed core's events and header, for the transaction (exactly once) or
        to flush before the offsets are committed (at least once)."""
        records: list[RawRecord] = []
        for partition in sorted(self._unsaved & self._cores.keys()):
            core = self._cores[partition]
            records += encode_changes(partition, core.changes())
            records.append(encode_header(partition, core.state(whole=False)))
        self.stats.checkpoints += bool(records)
        self._unsaved.clear()
        return {self._changelog: records}

    def offsets(self, consumed: Offsets) -> Offsets:
        """``consumed``: the changelog holds the state as of those offsets (in their
        transaction, or flushed before them)."""
        return consumed


def run_joiner(settings: Settings, *, stop: threading.Event, group_id: str = "riverops-joiner",
               stats: JoinerStats | None = None, telemetry: Telemetry | None = None) -> JoinerStats:
    """Join until ``stop`` is set; checkpoint on the way and on a clean stop."""
    role = JoinerRole(settings, group_id=group_id, stats=stats)
    run(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    return role.stats
