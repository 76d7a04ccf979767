"""The worker runtime: one consume / decode / handle / produce / commit loop for every role.

A role is a :class:`RoleSpec`: the topics it reads, how it handles a batch and the
passing of time, what it may commit. The runtime owns everything around it, once:

- the consumer (with the role's overrides), the subscription and the rebalance hooks;
- the registry follower, for roles that serve or train models;
- size limits and decoding by the topic catalogue's schema; every record a role cannot
  take becomes a dead letter with its reason, through :func:`~riverops.kafka.deadletter.dead_letter`;
- the same telemetry for every role: records in and out per topic, dead letters, latency;
- the commit sequence (:meth:`Runtime.commit`), by ``settings.processing_guarantee``:

  - ``exactly_once``: the outputs of a commit interval, the role's state changes
    (:meth:`RoleSpec.changelog`) and the offsets it vouches for (:meth:`RoleSpec.offsets`)
    are one Kafka transaction (:class:`~riverops.kafka.outbox.TransactionalOutbox`). When
    it aborts, the runtime rewinds: the role drops the state of its partitions and gets
    them again at the committed offsets (:meth:`RoleSpec.revoke` then :meth:`RoleSpec.assign`),
    so no state is left ahead of the topics (:mod:`riverops.rebalancing`: partitions
    moving in and out);
  - ``at_least_once``: outputs flushed, then the role's state changes
    (:meth:`RoleSpec.changelog`) written and flushed, then the offsets the role vouches
    for (:meth:`RoleSpec.offsets`) committed. Nothing is committed before the outputs it
    caused were delivered, and no state change says an output was made before it was:
    a crash in between repeats outputs, never loses them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Message, TopicPartition

from riverops.kafka.clients import (
    commit,
    consume_batch,
    high_watermarks,
    make_consumer,
    ok,
    past_markers,
    reached,
)
from riverops.kafka.deadletter import dead_letter
from riverops.kafka.identity import WorkerSlot
from riverops.kafka.limits import check_record
from riverops.kafka.outbox import Outbox, TransactionAborted, TransactionalOutbox
from riverops.kafka.registry_topic import RegistryFollower
from riverops.kafka.topics import TopicCatalogue, TopicRole
from riverops.models.registry import Registry
from riverops.models.shared import PROCESS_ARTIFACTS
from riverops.rebalancing import Rebalancing
from riverops.rolespec import Context, Input, Offsets, Outputs, RoleSpec
from riverops.schemas.errors import DecodeError
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["Input", "Outputs", "RoleSpec", "Context", "Runtime", "run", "Offsets"]

log = logging.getLogger(__name__)


SIZE_LIMITED: frozenset[TopicRole] = frozenset({"features", "labels", "predictions"})
"""Inputs written by services outside riverops, held to :mod:`riverops.kafka.limits`
(riverops' own outputs are built within them)."""

_KEY_FIELDS: dict[TopicRole, str] = {"deadletter": "key"}
"""Outputs whose key field is not the catalogue's key name (a dead letter's is ``key``)."""
_TIME_FIELDS: dict[TopicRole, str] = {"predictions": "event_time"}
"""Outputs whose Kafka timestamp is their event time (downstream stream time)."""


class Runtime(Rebalancing):
    """Runs one :class:`RoleSpec` until ``stop`` is set; see the module docstring."""

    def __init__(self, role: RoleSpec, settings: Settings, *, stop: threading.Event, group_id: str,
                 telemetry: Telemetry | None = None) -> None:
        self.role, self.settings, self.stop, self.group_id, self.telemetry = role, settings, stop, group_id, telemetry
        self.codec = settings.codec()
        self.catalogue = TopicCatalogue.from_settings(settings)
        self.registry = Registry(keep_artifacts=settings.registry_keep_artifacts, shared=PROCESS_ARTIFACTS)
        self.follower: RegistryFollower | None = None
        self._topics = {self.catalogue.name(t): t for t in role.inputs}
        self._consumer: Any = None
        self._outbox: Outbox | None = None
        self.consumed: Offsets = {}
        self.committed: Offsets = {}
        self._failed = False
        self._owned: set[tuple[str, int]] = set()
        self.exactly_once = settings.processing_guarantee == "exactly_once" and bool(self._topics)
        self.aborts = 0
        """Transactions aborted (each followed by a rewind)."""
        self._renewals_counted = 0
        self._slot: WorkerSlot | None = None
        self._unconfirmed: dict[TopicRole, list[dict[str, Any]]] = {}
        """Records of the role's ``kept_on_abort`` outputs sent since the last commit."""
        self._resend: dict[TopicRole, list[dict[str, Any]]] = {}
        """The same, after an abort: to send in the next transaction."""
        self._rewinding: list[TopicPartition] | None = None
        """Partitions whose state was dropped after an abort, to get back (:meth:`_resume`)."""
        self._rewind_warning_at = 0.0  # a rewind still under way says so every 30 s
        self._rebalances = [0, 0]  # assignments, revokes: one inside a read makes its records stale
        self._starts: Offsets = {}
        """Where the last assignment started each partition (:meth:`_read_again`)."""

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        role = self.role
        try:
            if role.follows_registry:
                self.follower = RegistryFollower(self.settings, codec=self.codec)
                self.follower.read_to_end(self.registry)
            self._outbox = self._make_outbox()
            role.start(Context(self))
            if self._topics:
                self._consumer = make_consumer(self.settings, self.group_id, on_commit=self._on_commit,
                                               **role.consumer_config)
                lost = {"on_lost": self._on_lost} if self.exactly_once else {}
                self._consumer.subscribe(list(self._topics), on_assign=self._on_assign, on_revoke=self._on_revoke, **lost)
            last_commit = time.monotonic()
            while not self.stop.is_set():
                if self._rewinding is not None and not self._resume():
                    self._serve(1.0)  # the broker is away: try again in a moment
                    continue
                self._follow()
                out = Outputs()
                for topic, records in self._resend.items():
                    out.add(topic, records)
                self._resend = {}
                messages = self._consume()
                if messages:
                    self._handle(messages, out)
                role.tick(time.monotonic(), out)
                try:
                    self._send(out)
                except TransactionAborted as exc:
                    self._aborted(exc, rewind=True)
                if time.monotonic() - last_commit >= role.commit_seconds:
                    self.commit(wait=not role.stateless)
                    last_commit = time.monotonic()
            self.commit()
            role.stopped()
        except BaseException:
            self._failed = True  # nothing more is committed: the state may be mid-batch
            raise
        finally:  # the consumer first: closing it revokes the partitions (see _on_revoke)
            for part in (self._consumer, self._outbox, self.follower):
                if part is not None:
                    part.close()
            if self._slot is not None:
                self._slot.release()

    def _make_outbox(self) -> Outbox:
        if not self.exactly_once:
            if self._topics:
                log.info("%s: processing guarantee at_least_once (outputs flushed, then offsets "
                         "committed; repeats possible after a crash)", self.role.name)
            return Outbox(self.settings, codec=self.codec, **self.role.producer_config)
        self._slot = WorkerSlot.claim(self.settings.state_dir, self.group_id)
        outbox = TransactionalOutbox(self.settings, codec=self.codec, **self.role.producer_config,
                                     transactional_id=self._slot.transactional_id)
        log.info("%s: processing guarantee exactly_once (transactional id %s)", self.role.name,
                 outbox.transactional_id)
        return outbox

    def _follow(self) -> None:
        updates = self.follower.poll(timeout=0) if self.follower is not None else None
        if updates:
            self.registry.apply_all(updates)
            self.role.on_registry(updates)

    def _consume(self) -> list[Message]:
        if self._consumer is None:
            self.stop.wait(self.role.poll_seconds)
            return []
        size, (assigned, revoked) = self.settings.batch_size, self._rebalances
        messages = [m for m in consume_batch(self._consumer, size, self.role.poll_seconds) if ok(m)]
        deadline = time.monotonic() + self.role.read_on_seconds
        while messages and self.role.incomplete(messages) and time.monotonic() < deadline:
            messages += [m for m in self._consumer.consume(size, 0.1) if ok(m)]
        if self._rebalances[0] != assigned:  # some were read before it: a new owner's state is not theirs
            return self._read_again(messages)
        if self._rebalances[1] != revoked:  # their new owner handles the revoked partitions' records
            return [m for m in messages if (m.topic(), m.partition()) in self._owned]
        return messages

    def _handle(self, messages: list[Message], out: Outputs) -> None:
        started = time.perf_counter()
        batch: list[Input] = []
        by_topic: dict[TopicRole, list[Message]] = {}
        for message in messages:
            topic = self._topics[message.topic() or ""]
            if topic in SIZE_LIMITED and (too_big := check_record(message.key(), message.value())):
                out.reject(message, too_big)
                continue
            by_topic.setdefault(topic, []).append(message)
        if self.role.decode:
            decoded: dict[int, Any] = {}
            for topic, group in by_topic.items():
                schema = self.catalogue.spec(topic).value_schema
                for message, item in zip(group, self.codec.decode_many(schema, [m.value() for m in group]),
                                         strict=True):
                    if isinstance(item, DecodeError):
                        out.reject(message, item)
                    else:
                        decoded[id(message)] = item
            batch = [Input(self._topics[m.topic() or ""], m, decoded[id(m)])
                     for m in messages if id(m) in decoded]
        else:
            kept = {id(m) for group in by_topic.values() for m in group}
            batch = [Input(self._topics[m.topic() or ""], m, m.value()) for m in messages if id(m) in kept]
        self.role.handle(batch, out)
        for message in messages:
            key = (message.topic() or "", message.partition() or 0)
            if key in self._owned:  # a batch read on across a rebalance may hold revoked ones
                self.consumed[key] = max(self.consumed.get(key, 0), (message.offset() or 0) + 1)
        if self.telemetry is not None:  # every record read counts in, refused ones too
            for name, n in Counter(m.topic() or "" for m in messages).items():
                self.telemetry.count_in(name, n)
            if self.role.latency_stage is not None:
                self.telemetry.observe_latency(self.role.latency_stage, time.perf_counter() - started)

    def _send(self, out: Outputs) -> None:
        assert self._outbox is not None
        if out.rejected:
            letters = [dead_letter(source, error, processor=self.role.name) for source, error in out.rejected]
            out.add("deadletter", letters)
            if hasattr(self.role.stats, "dead_letters"):
                self.role.stats.dead_letters += len(letters)
            if self.telemetry is not None:
                for letter in letters:
                    self.telemetry.count_dead_letter(letter["source_topic"], letter["error_type"])
        for topic, records in out.records.items():
            if not records:
                continue
            if topic in self.role.kept_on_abort and self.exactly_once:
                self._unconfirmed.setdefault(topic, []).extend(records)
            spec = self.catalogue.spec(topic)
            self._outbox.send(spec.name, spec.value_schema, records,
                              key=_KEY_FIELDS.get(topic, spec.key), time_field=_TIME_FIELDS.get(topic),
                              headers=out.headers.get(topic))
            if self.telemetry is not None:
                self.telemetry.count_out(spec.name, len(records))
        for topic, encoded in out.encoded.items():
            if encoded:
                name = self.catalogue.name(topic)
                self._outbox.send_encoded(name, encoded)
                if self.telemetry is not None:
                    self.telemetry.count_out(name, len(encoded))

    # -- the commit sequence -------------------------------------------------------------
    def commit(self, only: set[tuple[str, int]] | None = None, *, wait: bool = True) -> None:
        """Flush the outputs, let the role make its state durable, commit the offsets it
        covers (of the partitions in ``only``, when given); ``wait=False`` (a stateless
        role): commit the offsets of earlier calls whose outputs are delivered by now, the
        newest ones once theirs are. Exactly once: commit the interval's transaction (all
        partitions: their outputs are in it)."""
        assert self._outbox is not None
        self._report_state()
        if self._consumer is not None:
            past_markers(self._consumer, self.consumed)
        if isinstance(self._outbox, TransactionalOutbox):
            self._commit_transaction(self._outbox, rewind=only is None)
            return
        if wait:
            self._outbox.flush(f"{self.role.name} output")
            changes = [(topic, records) for topic, records in self.role.changelog().items() if records]
            for topic, records in changes:
                self._outbox.send_raw(topic, records)
            if changes:
                self._outbox.flush(f"{self.role.name} state changes")
        consumed = self.consumed if only is None else {k: v for k, v in self.consumed.items() if k in only}
        offsets = self.role.offsets(dict(consumed))
        if only is not None:
            offsets = {k: v for k, v in offsets.items() if k in only}
        if not wait:  # the newest offsets whose outputs are all delivered
            offsets = {k: v for ready in self._outbox.after_delivery(offsets, f"{self.role.name} output")
                       for k, v in ready.items()}
        fresh = {k: v for k, v in offsets.items() if self.committed.get(k) != v}
        if fresh and self._consumer is not None:  # not waiting: nor for the commit (_on_commit)
            if commit(self._consumer, [TopicPartition(t, p, o) for (t, p), o in fresh.items()],
                      asynchronous=not wait):
                self.committed.update(fresh)

    def _report_state(self) -> None:
        """The role's bounded structures and its registry's, on the state gauge."""
        if self.telemetry is None:
            return
        sizes = dict(self.role.state_sizes())
        if self.role.follows_registry:
            sizes["registry_versions"], sizes["registry_artifacts"] = self.registry.sizes()
        self.telemetry.set_state(sizes)

    def _on_commit(self, error: Any, partitions: list[TopicPartition]) -> None:
        """An asynchronous commit's result: a failed one is made again at the next commit."""
        for tp in partitions:
            if error is not None or tp.error is not None:
                self.committed.pop((tp.topic, tp.partition), None)

    def _commit_transaction(self, outbox: TransactionalOutbox, *, rewind: bool) -> None:
        offsets = self.role.offsets(dict(self.consumed))
        fresh = {k: v for k, v in offsets.items() if self.committed.get(k) != v}
        try:
            for topic, records in self.role.changelog().items():
                if records:
                    outbox.send_raw(topic, records)
            outbox.commit([TopicPartition(t, p, o) for (t, p), o in fresh.items()],
                          self._consumer.consumer_group_metadata() if fresh else None,
                          f"{self.role.name} output")
        except TransactionAborted as exc:
            self._aborted(exc, rewind=rewind)
            return
        self.committed.update(fresh)
        self._unconfirmed = {}

    def _aborted(self, exc: TransactionAborted, *, rewind: bool) -> None:
        self.aborts += 1
        renewals = getattr(self._outbox, "renewals", 0)
        if self.telemetry is not None:
            self.telemetry.count_abort(renewed=renewals - self._renewals_counted)
        self._renewals_counted = renewals
        for topic, records in self._unconfirmed.items():
            self._resend.setdefault(topic, []).extend(records)
        self._unconfirmed = {}
        log.warning("%s: %s; %s", self.role.name, exc,
                    "rewinding to the committed offsets" if rewind else "the partitions go to their next owner")
        if rewind:
            self._rewind()

    # -- progress ------------------------------------------------------------------------
    def assignment(self) -> list[TopicPartition]:
        return list(self._consumer.assignment()) if self._consumer is not None else []

    def ends(self, topic: TopicRole) -> Offsets:
        name = self.catalogue.name(topic)
        ends = high_watermarks(self._consumer, [(tp.topic, tp.partition) for tp in self.assignment()
                                                if tp.topic == name]) if self._consumer else {}
        return {key: high for key, high in ends.items() if high > 0}

    def at_end(self, ends: Mapping[tuple[str, int], int]) -> bool:
        return self._consumer is None or reached(self._consumer, dict(ends))


def run(role: RoleSpec, settings: Settings, *, stop: threading.Event, group_id: str,
        telemetry: Telemetry | None = None) -> Runtime:
    """Run ``role`` until ``stop`` is set (its counts are in ``role.stats``); the runtime, for its offsets."""
    runtime = Runtime(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    runtime.run()
    return runtime
