"""Partitions moving in and out of a worker: assignment, revoke, loss, and the rewind after an abort.

Part of the worker runtime (:class:`~riverops.runtime.Runtime` is a :class:`Rebalancing`):

- on assignment the role restores each partition's state and says where each starts;
  a restore that fails (its broker away) pauses the partitions, without state, until
  :meth:`Rebalancing._resume` restores them, as after an abort;
- on revoke the runtime commits what it handled first; on loss (exactly once) it aborts
  the open transaction, since another member owns the partitions by now;
- after an abort the role drops its partitions' state and gets them back at the
  committed offsets (:meth:`Rebalancing._rewind`, :meth:`Rebalancing._resume`);
- a rebalance inside one read makes that read's records stale: none is handled, and each
  partition goes back to where its assignment started it (:meth:`Rebalancing._read_again`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, TopicPartition

from riverops.kafka.clients import committed_offsets
from riverops.kafka.outbox import Outbox, TransactionalOutbox
from riverops.rolespec import Offsets, RoleSpec
from riverops.schemas.errors import AuthorizationError, RiveropsError
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["Rebalancing"]

log = logging.getLogger("riverops.runtime")


class Rebalancing:
    """The runtime's partition bookkeeping; the attributes are the runtime's."""

    role: RoleSpec
    settings: Settings
    telemetry: Telemetry | None
    consumed: Offsets
    committed: Offsets
    _consumer: Any
    _outbox: Outbox | None
    _failed: bool
    _owned: set[tuple[str, int]]
    _rewinding: list[TopicPartition] | None
    _rewind_warning_at: float
    _rebalances: list[int]
    _starts: Offsets

    if TYPE_CHECKING:  # the runtime's
        def commit(self, only: set[tuple[str, int]] | None = None, *, wait: bool = True) -> None: ...

        def assignment(self) -> list[TopicPartition]: ...

    def _read_again(self, messages: list[Message]) -> list[Message]:
        """After a rebalance inside one consume: none of its records is handled; each owned
        partition goes back to where the assignment started it. A record read before the
        rebalance handed to the state restored by it would move that state's positions past
        records it never saw (the joiner then drops them as re-deliveries: lost)."""
        if not messages:  # nothing read: the positions are the assignment's
            return []
        waiting = {(tp.topic, tp.partition) for tp in self._rewinding or ()}
        if not self._owned - waiting <= self._starts.keys():  # its committed offsets unknown: as before
            return [m for m in messages if (m.topic(), m.partition()) in self._owned]
        for key in sorted(self._owned - waiting):
            try:
                self._consumer.seek(TopicPartition(*key, self._starts[key]))
            except KafkaException as exc:  # no longer ours: the coming rebalance says so
                log.warning("%s: cannot seek %s[%s] (%s)", self.role.name, *key, exc)
        log.info("%s: a rebalance inside one read: %d records read again", self.role.name, len(messages))
        return []

    def _rewind(self) -> None:
        """After an abort: the role drops its partitions' state at once; the loop then gets
        them back at the committed offsets (:meth:`_resume`), as a new owner would."""
        partitions = self.assignment()
        self.role.revoke(partitions)
        self.consumed.clear()
        self.committed.clear()
        self._consumer.pause(partitions)  # nothing is read until they are back
        self._rewinding = partitions
        self._rewind_warning_at = time.monotonic()

    def _serve(self, seconds: float) -> None:
        """While rewinding: let the consumer serve its rebalance callbacks (a group that
        moved on during the outage reassigns meanwhile) without losing what it returns."""
        put_back: set[tuple[str, int]] = set()
        for message in self._consumer.consume(self.settings.batch_size, seconds):
            key = (message.topic(), message.partition())
            if message.error() is None and key not in put_back:  # assigned meanwhile: read later
                put_back.add(key)
                self._consumer.seek(TopicPartition(*key, message.offset()))
        if time.monotonic() - self._rewind_warning_at >= 30:
            self._rewind_warning_at = time.monotonic()
            log.warning("%s: still rewinding (its committed offsets or state cannot be read yet)", self.role.name)

    def _resume(self) -> bool:
        """Give the role its partitions back at the committed offsets; False while the
        broker cannot say what they are (nothing is read meanwhile)."""
        partitions = self._rewinding or []
        committed = self._committed(self._consumer, partitions)
        if committed is None or not self._restored(partitions, committed):
            return False
        for tp in partitions:
            if tp.offset < 0:
                tp.offset = committed.get((tp.topic, tp.partition), OFFSET_BEGINNING)
            try:
                self._consumer.seek(tp)
            except KafkaException as exc:  # no longer ours: the coming rebalance says so
                log.warning("%s: cannot seek %s[%s] (%s)", self.role.name, tp.topic, tp.partition, exc)
        self._consumer.resume(partitions)
        self._rewinding = None
        log.info("%s: resumed %d partitions at the committed offsets", self.role.name, len(partitions))
        return True

    def _restored(self, partitions: list[TopicPartition], committed: Offsets | None) -> bool:
        """``role.assign``; False, what it restored dropped, when it cannot (``_rewinding`` holds no state)."""
        try:
            self.role.assign(partitions, committed)
            return True
        except (KafkaException, RiveropsError) as exc:
            if isinstance(exc, AuthorizationError):
                raise
            log.warning("%s: cannot restore its partitions yet (%s)", self.role.name, exc)
            self.role.revoke(partitions)
            return False

    # -- rebalances ----------------------------------------------------------------------
    def _committed(self, consumer: Any, partitions: list[TopicPartition]) -> Offsets | None:
        committed = committed_offsets(consumer, partitions, self.role.name)
        self.committed.update(committed or {})
        return committed

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        committed = self._committed(consumer, partitions)
        restored = self._restored(partitions, committed)
        self._rebalances[0] += 1
        self._starts = {(tp.topic, tp.partition): tp.offset for tp in partitions if tp.offset >= 0}
        if committed is not None:  # the others start at their committed offsets, or at the beginning
            for tp in partitions:
                self._starts.setdefault((tp.topic, tp.partition), committed.get((tp.topic, tp.partition), OFFSET_BEGINNING))
        consumer.assign(partitions)
        self._owned = {(tp.topic, tp.partition) for tp in partitions}
        if self._rewinding is not None:  # a rebalance during a rewind: these are done
            self._rewinding = [tp for tp in self._rewinding if (tp.topic, tp.partition) not in self._owned]
        if not restored:  # raising in this callback stops the worker: _resume restores them
            consumer.pause(partitions)
            self._rewinding = [*(self._rewinding or []), *partitions]
        else:  # paused by a rewind and lost since: readable again, whether or not the client kept the pause
            consumer.resume(partitions)
        if self.telemetry is not None:
            self.telemetry.set_assigned(len(self._owned))
        if hasattr(self.role.stats, "assigned"):
            self.role.stats.assigned = True
        log.info("%s assigned %s", self.role.name,
                 [f"{tp.topic}[{tp.partition}]" + (f"@{tp.offset}" if tp.offset >= 0 else "") for tp in partitions])

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition], *, lost: bool = False) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._rebalances[1] += 1
        if lost and isinstance(self._outbox, TransactionalOutbox):
            self._outbox.abort()  # another member owns them now: its commit would be fenced
            log.warning("%s lost %d partitions; their open transaction aborted", self.role.name, len(gone))
        elif not self._failed:
            self.commit(only=gone)
        dropped = {(tp.topic, tp.partition) for tp in self._rewinding or ()}  # no state left
        self.role.revoke([tp for tp in partitions if (tp.topic, tp.partition) not in dropped])
        if self._rewinding is not None:
            self._rewinding = [tp for tp in self._rewinding if (tp.topic, tp.partition) not in gone]
        self._owned -= gone
        if self.telemetry is not None:
            self.telemetry.set_assigned(len(self._owned))
        for key in gone:
            self.consumed.pop(key, None)
            self.committed.pop(key, None)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions, lost=True)
