"""What a role is to the worker runtime: its inputs and outputs, the hooks it overrides, and
the :class:`Context` through which it sees the runtime (see :mod:`riverops.runtime`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Message, TopicPartition

from riverops.kafka.deadletter import SourceRecord
from riverops.kafka.outbox import Headers, RawRecord
from riverops.kafka.registry_topic import RegistryChange, RegistryFollower, publish_change
from riverops.kafka.topics import TopicCatalogue, TopicRole
from riverops.models.registry import Registry
from riverops.schemas.codec import Codec
from riverops.schemas.errors import RiveropsError
from riverops.schemas.events import ModelVersion
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["Offsets", "Input", "Outputs", "Context", "RoleSpec", "RuntimeView"]

Offsets = dict[tuple[str, int], int]
"""Next offset to read per (topic, partition): what a commit stores."""


class RuntimeView(Protocol):
    """The part of the runtime a :class:`Context` reads."""

    settings: Settings
    codec: Codec
    catalogue: TopicCatalogue
    registry: Registry
    telemetry: Telemetry | None
    follower: RegistryFollower | None

    def ends(self, topic: TopicRole) -> Offsets: ...

    def at_end(self, ends: Mapping[tuple[str, int], int]) -> bool: ...

    def assignment(self) -> list[TopicPartition]: ...


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
    encoded: dict[TopicRole, list[tuple[str, bytes]]] = field(default_factory=dict)
    """Records already encoded with the topic's value schema: (key, payload)."""

    def add(self, topic: TopicRole, records: Sequence[dict[str, Any]], *,
            headers: Callable[[dict[str, Any]], Headers] | None = None) -> None:
        self.records.setdefault(topic, []).extend(records)
        if headers is not None:
            self.headers[topic] = headers

    def add_encoded(self, topic: TopicRole, records: Sequence[tuple[str, bytes]]) -> None:
        """Records the role encoded itself (the joiner's spliced feedback): (key, payload)."""
        self.encoded.setdefault(topic, []).extend(records)

    def reject(self, source: SourceRecord, error: RiveropsError) -> None:
        """Dead-letter ``source`` (a consumed message, or an :class:`~riverops.kafka.deadletter.Origin`)."""
        self.rejected.append((source, error))


class Context:
    """What a role may use of the runtime: settings, codec, catalogue, registry, telemetry,
    and questions about the consumer's progress."""

    def __init__(self, runtime: RuntimeView) -> None:
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

    def publish_change(self, build: RegistryChange) -> list[ModelVersion]:
        """Publish the records ``build`` makes of the registry read to the end, with no
        other writer in between (``build`` may be called again after another writer got
        in first: :func:`~riverops.kafka.registry_topic.publish_change`); acknowledged and
        folded into ``registry`` on return."""
        assert self._runtime.follower is not None, "the role does not follow the registry"
        return publish_change(self.settings, build, registry=self._runtime.registry,
                              follower=self._runtime.follower)


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
    producer_config: Mapping[str, Any] = {}
    """librdkafka settings of the role's output producer over riverops' defaults."""
    commit_seconds: float = 0.0
    """Least time between commits; 0 commits after every batch."""
    stateless: bool = False
    """The role has no state for :meth:`offsets` to make durable: at least once, its
    commits do not wait for its outputs' delivery (each batch's offsets are committed at a
    later batch, once its outputs are acknowledged)."""
    poll_seconds: float = 0.2
    """Longest wait for the first record of a batch (the tick runs at least this often)."""
    read_on_seconds: float = 2.0
    """Longest time :meth:`incomplete` may keep a batch open."""
    kept_on_abort: tuple[TopicRole, ...] = ()
    """Outputs of state that an abort's rewind does not roll back, sent again in the next
    transaction (exactly once): the monitor's drift alarms, whose detectors keep what the
    dedupe then skips in the re-read feedback. Every other output is made again from the
    re-read inputs."""
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
        were delivered, or inside the transaction that will deliver them). ``consumed``
        holds the next offset of every partition handled; the default commits all of it."""
        return consumed

    def state_sizes(self) -> Mapping[str, int]:
        """Entries of each bounded per-event structure the role holds (a gauge per name,
        ``riverops_state_entries``); none by default."""
        return {}

    def changelog(self) -> Mapping[str, Sequence[RawRecord]]:
        """Exactly-once only: the state changes since the last commit, as records per
        changelog topic, written in the transaction of the outputs and offsets."""
        return {}

    def stopped(self) -> None:
        """The last hook: the final commit is done."""
