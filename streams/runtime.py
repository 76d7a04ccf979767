"""The worker runtime: one consume / decode / handle / produce / commit loop for every role.

A role is a :class:`RoleSpec`: the topics it reads, how it handles a batch and the
passing of time, what it may commit. The runtime owns everything around it, once:

- the consumer (with the role's overrides), the subscription and the rebalance hooks;
- the registry follower, for roles that serve or train models;
- size limits and decoding by the topic catalogue's schema; every record a role cannot
  take becomes a dead letter with its reason, through :func:`~riverops.kafka.deadletter.dead_letter`;
- the same telemetry for every role: records in and out per topic, dead letters, latency;
- the commit sequence (:meth:`Runtime.commit`): outputs flushed, then the role's state
  made durable (:meth:`RoleSpec.offsets`), then the offsets that state vouches for
  committed. Nothing is committed before the outputs it caused were delivered; the
  exactly-once issue replaces this one method with a transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Message, TopicPartition

from riverops.kafka.clients import (
    commit,
    consume_batch,
    high_watermarks,
    make_consumer,
    ok,
    reached,
)
from riverops.kafka.deadletter import SourceRecord, dead_letter
from riverops.kafka.limits import check_record
from riverops.kafka.outbox import Headers, Outbox
from riverops.kafka.registry_topic import RegistryFollower, choosing_version, publish_records
from riverops.kafka.topics import TopicCatalogue, TopicRole
from riverops.models.registry import Registry
from riverops.schemas.codec import Codec
from riverops.schemas.errors import DecodeError, RiveropsError
from riverops.schemas.events import ModelVersion
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["Input", "Outputs", "RoleSpec", "Context", "Runtime", "run", "Offsets"]

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]
"""Next offset to read per (topic, partition): what a commit stores."""

SIZE_LIMITED: frozenset[TopicRole] = frozenset({"features", "labels", "predictions"})
"""Inputs written by services outside riverops, held to :mod:`riverops.kafka.limits`
(riverops' own outputs are built within them)."""

_KEY_FIELDS: dict[TopicRole, str] = {"deadletter": "key"}
"""Outputs whose key field is not the catalogue's key name (a dead letter's is ``key``)."""
_TIME_FIELDS: dict[TopicRole, str] = {"predictions": "event_time"}
"""Outputs whose Kafka timestamp is their event time (downstream stream time)."""


@dataclass(frozen=True)
class Input:
    """One consumed record: its topic's catalogue role, the message, the decoded value
    (the raw bytes for a role with ``decode = False``)."""

    topic: TopicRole
    message: Message
    value: Any

    @property
    def source(self) -> tuple[str, int, int]:
        m = self.message
        return (m.topic() or "", m.partition() or 0, m.offset() or 0)


@dataclass
class Outputs:
    """What a role made of a batch or a tick: records per output topic, rejected inputs."""

    records: dict[TopicRole, list[dict[str, Any]]] = field(default_factory=dict)
    headers: dict[TopicRole, Callable[[dict[str, Any]], Headers]] = field(default_factory=dict)
    rejected: list[tuple[SourceRecord, RiveropsError]] = field(default_factory=list)

    def add(self, topic: TopicRole, records: Sequence[dict[str, Any]], *,
            headers: Callable[[dict[str, Any]], Headers] | None = None) -> None:
        self.records.setdefault(topic, []).extend(records)
        if headers is not None:
            self.headers[topic] = headers

    def reject(self, source: SourceRecord, error: RiveropsError) -> None:
        """Dead-letter ``source`` (a consumed message, or an :class:`~riverops.kafka.deadletter.Origin`)."""
        self.rejected.append((source, error))


class Context:
    """What a role may use of the runtime: settings, codec, catalogue, registry, telemetry,
    and questions about the consumer's progress."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.settings = runtime.settings
        self.codec: Codec = runtime.codec
        self.catalogue = runtime.catalogue
        self.registry = runtime.registry
        self.telemetry = runtime.telemetry

    def ends(self, topic: TopicRole) -> Offsets:
        """The end of each assigned partition of ``topic`` as the last fetch saw it
        (partitions that are still empty are left out: there is nothing to wait for)."""
        return self._runtime.ends(topic)

    def at_end(self, ends: Mapping[tuple[str, int], int]) -> bool:
        """True when this consumer has read up to ``ends`` (see :meth:`ends`)."""
        return self._runtime.at_end(ends)

    def assigned(self, topic: TopicRole) -> bool:
        return any(tp.topic == self.catalogue.name(topic) for tp in self._runtime.assignment())

    @contextmanager
    def choosing_version(self) -> Iterator[Registry]:
        """Hold the registry's next version number while registering (see
        :func:`~riverops.kafka.registry_topic.choosing_version`)."""
        assert self._runtime.follower is not None, "the role does not follow the registry"
        with choosing_version(self._runtime.registry, self._runtime.follower) as registry:
            yield registry

    def publish(self, records: list[ModelVersion]) -> None:
        """Publish registry records (synchronously: acknowledged on return) and fold them in."""
        publish_records(self.settings, records)
        self._runtime.registry.apply_all(records)


class RoleSpec:
    """A role as the runtime runs it. Subclasses set the class attributes and override
    the hooks they need; every hook has a harmless default."""

    name: str = "role"
    """The processor named in dead letters and the ``role`` label of the metrics."""
    inputs: tuple[TopicRole, ...] = ()
    decode: bool = True
    """Decode inputs with their topic's schema; False hands the raw bytes over (the joiner
    keeps them encoded)."""
    follows_registry: bool = False
    consumer_config: Mapping[str, Any] = {}
    commit_seconds: float = 0.0
    """Least time between commits; 0 commits after every batch."""
    poll_seconds: float = 0.2
    """Longest wait for the first record of a batch (the tick runs at least this often)."""
    read_on_seconds: float = 2.0
    """Longest time :meth:`incomplete` may keep a batch open."""
    latency_stage: str | None = None
    """The stage name under which handling time is observed (None: not observed)."""
    stats: Any = None
    """The role's counts (a dataclass); the runtime keeps its ``assigned`` and
    ``dead_letters`` fields, when it has them."""

    def start(self, ctx: Context) -> None:
        """Called once, after the registry was read to the end, before subscribing."""
        self.ctx = ctx

    def on_registry(self, updates: list[ModelVersion]) -> None:
        """New registry records (already folded into ``ctx.registry``)."""

    def assign(self, partitions: list[TopicPartition], committed: Offsets | None) -> None:
        """Partitions given to this worker; set ``tp.offset`` to start elsewhere than the
        committed offset. ``committed`` holds them (a partition absent: none committed
        yet), or is None when the group coordinator could not say."""

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions taken away, after the runtime committed what was done with them."""

    def incomplete(self, batch: list[Message]) -> bool:
        """True to have the runtime read on before handling (the joiner waits for the
        rest of an event's predictions)."""
        return False

    def handle(self, batch: list[Input], out: Outputs) -> None:
        """Handle decoded inputs; add outputs and rejections to ``out``."""

    def tick(self, now: float, out: Outputs) -> None:
        """Time-driven work (``time.monotonic()``), after every batch or empty poll."""

    def offsets(self, consumed: Offsets) -> Offsets:
        """Make state durable and return the offsets it covers (called after the outputs
        were delivered). ``consumed`` holds the next offset of every partition handled;
        the default commits all of it."""
        return consumed

    def stopped(self) -> None:
        """The last hook: the final commit is done."""


class Runtime:
    """Runs one :class:`RoleSpec` until ``stop`` is set; see the module docstring."""

    def __init__(self, role: RoleSpec, settings: Settings, *, stop: threading.Event, group_id: str,
                 telemetry: Telemetry | None = None) -> None:
        self.role, self.settings, self.stop, self.group_id = role, settings, stop, group_id
        self.telemetry = telemetry
        self.codec = settings.codec()
        self.catalogue = TopicCatalogue.from_settings(settings)
        self.registry = Registry()
        self.follower: RegistryFollower | None = None
        self._topics = {self.catalogue.name(t): t for t in role.inputs}
        self._consumer: Any = None
        self._outbox: Outbox | None = None
        self.consumed: Offsets = {}
        self.committed: Offsets = {}
        self._failed = False
        self._owned: set[tuple[str, int]] = set()

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        role = self.role
        try:
            if role.follows_registry:
                self.follower = RegistryFollower(self.settings, codec=self.codec)
                self.follower.read_to_end(self.registry)
            self._outbox = Outbox(self.settings, codec=self.codec)
            role.start(Context(self))
            if self._topics:
                self._consumer = make_consumer(self.settings, self.group_id, **role.consumer_config)
                self._consumer.subscribe(list(self._topics), on_assign=self._on_assign,
                                         on_revoke=self._on_revoke)
            last_commit = time.monotonic()
            while not self.stop.is_set():
                self._follow()
                out = Outputs()
                messages = self._consume()
                if messages:
                    self._handle(messages, out)
                role.tick(time.monotonic(), out)
                self._send(out)
                if time.monotonic() - last_commit >= role.commit_seconds:
                    self.commit()
                    last_commit = time.monotonic()
            self.commit()
            role.stopped()
        except BaseException:
            self._failed = True  # nothing more is committed: the state may be mid-batch
            raise
        finally:
            if self._consumer is not None:
                self._consumer.close()  # revokes the partitions (see _on_revoke)
            if self._outbox is not None:
                self._outbox.close()
            if self.follower is not None:
                self.follower.close()

    def _follow(self) -> None:
        if self.follower is None:
            return
        updates = self.follower.poll(timeout=0)
        if updates:
            self.registry.apply_all(updates)
            self.role.on_registry(updates)

    def _consume(self) -> list[Message]:
        if self._consumer is None:
            self.stop.wait(self.role.poll_seconds)
            return []
        size = self.settings.batch_size
        messages = [m for m in consume_batch(self._consumer, size, self.role.poll_seconds) if ok(m)]
        deadline = time.monotonic() + self.role.read_on_seconds
        while messages and self.role.incomplete(messages) and time.monotonic() < deadline:
            messages += [m for m in self._consumer.consume(size, 0.1) if ok(m)]
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
            spec = self.catalogue.spec(topic)
            self._outbox.send(spec.name, spec.value_schema, records,
                              key=_KEY_FIELDS.get(topic, spec.key), time_field=_TIME_FIELDS.get(topic),
                              headers=out.headers.get(topic))
            if self.telemetry is not None:
                self.telemetry.count_out(spec.name, len(records))

    # -- the commit sequence -------------------------------------------------------------
    def commit(self, only: set[tuple[str, int]] | None = None) -> None:
        """Flush the outputs, let the role make its state durable, commit the offsets it
        covers (of the partitions in ``only``, when given)."""
        assert self._outbox is not None
        self._outbox.flush(f"{self.role.name} output")
        consumed = self.consumed if only is None else {k: v for k, v in self.consumed.items() if k in only}
        offsets = self.role.offsets(dict(consumed))
        if only is not None:
            offsets = {k: v for k, v in offsets.items() if k in only}
        fresh = {k: v for k, v in offsets.items() if self.committed.get(k) != v}
        if fresh and self._consumer is not None:
            if commit(self._consumer, [TopicPartition(t, p, o) for (t, p), o in fresh.items()]):
                self.committed.update(fresh)

    # -- rebalances ----------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        committed: Offsets | None
        try:
            found = consumer.committed(partitions, timeout=10)
            committed = {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
            self.committed.update(committed)
        except KafkaException as exc:
            log.warning("%s: could not read committed offsets (%s)", self.role.name, exc)
            committed = None
        self.role.assign(partitions, committed)
        consumer.assign(partitions)
        self._owned = {(tp.topic, tp.partition) for tp in partitions}
        if self.telemetry is not None:
            self.telemetry.set_assigned(len(self._owned))
        if hasattr(self.role.stats, "assigned"):
            self.role.stats.assigned = True
        log.info("%s assigned %s", self.role.name,
                 [f"{tp.topic}[{tp.partition}]" + (f"@{tp.offset}" if tp.offset >= 0 else "") for tp in partitions])

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if not self._failed:
            self.commit(only=gone)
        self.role.revoke(partitions)
        self._owned -= gone
        if self.telemetry is not None:
            self.telemetry.set_assigned(len(self._owned))
        for key in gone:
            self.consumed.pop(key, None)
            self.committed.pop(key, None)

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
    """Run ``role`` until ``stop`` is set (its counts are in ``role.stats``); the runtime,
    for its offsets."""
    runtime = Runtime(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    runtime.run()
    return runtime
