"""The registry topic: publish ModelVersion records, read them all, follow them live.

The registry topic has one partition, so the fold sees every change in one order.
Every change built from the registry (a new version number, a promotion, a rollback)
goes through :func:`publish_change`, the one rule that keeps writers from overwriting
each other. Under ``exactly_once`` "the end" of the topic is the last stable offset,
asked of the broker; under ``at_least_once`` it is the high watermark the consumer learns
while fetching (the embedded broker answers fresh watermark queries wrongly for batched
records).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from riverops.kafka.clients import (
    KAFKA_LOG,
    at_end,
    consume_batch,
    make_consumer,
    make_producer,
    raise_if_refused,
    reached,
)
from riverops.kafka.topics import TopicCatalogue
from riverops.models.registry import Registry
from riverops.schemas.codec import Codec
from riverops.schemas.errors import DecodeError, RegistryError
from riverops.schemas.events import ModelVersion
from riverops.settings import Settings

__all__ = ["publish_change", "publish_records", "read_registry", "RegistryFollower",
           "writer_id", "RegistryChange"]

log = logging.getLogger(__name__)

_NO_PARTITION = frozenset({KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART})

RegistryChange = Callable[[Registry], list[ModelVersion]]
"""Builds the records of one change from the registry read to the end (it must not
change that registry: it may be called again, on a fresher one, after a fence)."""


def writer_id(settings: Settings) -> str:
    """The one transactional id that every writer of this registry topic shares."""
    return f"{TopicCatalogue.from_settings(settings).name('model-registry')}.writer"


def publish_records(settings: Settings, records: Iterable[ModelVersion], *, timeout: float = 15.0) -> int:
    """Publish registry records as they are and wait until every one is acknowledged.

    For records whose version numbers are already settled (seeding a registry, tests);
    a change built from what the registry holds goes through :func:`publish_change`."""
    codec = settings.codec()
    topic = TopicCatalogue.from_settings(settings).name("model-registry")
    producer = make_producer(settings, **{"linger.ms": 0})
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error)

    count = 0
    for record in records:
        producer.produce(
            topic, key=record.key, value=codec.encode("ModelVersion", record.to_avro()),
            on_delivery=on_delivery,
        )
        count += 1
    remaining = producer.flush(timeout)
    for error in failures:  # the first refusal, if any, says most
        raise_if_refused(error, f"writing {topic}")
    if remaining or failures:
        raise RegistryError(f"registry publish failed ({remaining} undelivered): {[str(e) for e in failures]}")
    return count


class RegistryFollower:
    """A group-less consumer of the registry partition, from the beginning, never committing
    (``read_committed`` under ``exactly_once``: a fenced writer's records never count)."""

    def __init__(self, settings: Settings, *, codec: Codec | None = None) -> None:
        self.codec = codec or settings.codec()
        self.topic = TopicCatalogue.from_settings(settings).name("model-registry")
        self.exact = settings.processing_guarantee == "exactly_once"
        # a fetch at the end waits at most 100 ms for a new record (500 by default): a
        # writer reads to the end before each change, a scorer sees a promotion sooner
        overrides: dict[str, object] = {"enable.auto.commit": False, "fetch.wait.max.ms": 100}
        if self.exact:
            overrides["isolation.level"] = "read_committed"
        self._consumer: Consumer = make_consumer(
            settings, f"registry-reader-{uuid.uuid4().hex[:8]}", **overrides
        )
        self._partition = TopicPartition(self.topic, 0, OFFSET_BEGINNING)
        self._consumer.assign([self._partition])
        self.refused = 0
        self.missing = False
        """True when the last exact read to the end found no registry topic."""

    def poll(self, *, max_records: int = 500, timeout: float = 0.0) -> list[ModelVersion]:
        """New registry records since the last call (undecodable ones are logged and skipped)."""
        out: list[ModelVersion] = []
        for message in consume_batch(self._consumer, max_records, timeout):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    # librdkafka asks for the coordinator of the throwaway group.id it must
                    # have; this reader never joins it nor commits, so no group ACL is needed
                    continue
                raise_if_refused(error, f"reading {self.topic}")
                log.warning("registry consumer error: %s", error)
                continue
            try:
                out.append(ModelVersion.from_avro(self.codec.decode("ModelVersion", message.value())))
            except (DecodeError, ValueError) as exc:
                self.refused += 1
                log.error("refused registry record at offset %s: %s", message.offset(), exc)
        return out

    def caught_up(self) -> bool:
        """True when the position reached the high watermark learned while fetching."""
        return at_end(self._consumer, [(self.topic, 0)])

    def read_to_end(self, registry: Registry, *, timeout: float = 15.0) -> Registry:
        """Fold every record up to the end of the topic into ``registry``."""
        deadline = time.monotonic() + timeout
        end = self._stable_end(timeout) if self.exact else None
        idle_polls = 0
        while time.monotonic() < deadline:
            if end is not None and reached(self._consumer, {(self.topic, 0): end}):
                return registry
            records = self.poll(timeout=0.2)
            registry.apply_all(records)
            if records or end is not None:
                idle_polls = 0
                continue
            idle_polls += 1
            if self.caught_up() or idle_polls >= 10:
                return registry
        raise RegistryError(f"could not read the registry topic {self.topic} within {timeout}s")

    def _stable_end(self, timeout: float) -> int:
        """The last stable offset, asked now (a read_committed consumer's watermark query
        answers it): every committed record lies before it. 0 when there is no topic."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ask = max(1.0, min(5.0, deadline - time.monotonic()))  # asked again until the deadline
                end = int(self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, 0), timeout=ask, cached=False)[1])
                self.missing = False
                return end
            except KafkaException as exc:
                error = exc.args[0]
                raise_if_refused(error, f"reading {self.topic}")
                if error.code() in _NO_PARTITION and not self._topic_exists(timeout):
                    self.missing = True
                    return 0
                if time.monotonic() >= deadline:
                    raise RegistryError(f"cannot find the end of {self.topic}: {error}") from exc
            time.sleep(0.2)

    def _topic_exists(self, timeout: float) -> bool:
        """Asked of the broker, not of this client's metadata cache (a topic created a
        moment ago may not be in it yet)."""
        try:
            found = self._consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        except KafkaException:
            return True  # cannot tell: the caller waits and asks again
        return found is not None and found.error is None

    def close(self) -> None:
        self._consumer.close()


_VERSION_LOCK = threading.Lock()

# a fenced (or otherwise failed) transaction is tried again, backing off with jitter,
# this many times at most and within the call's timeout
_ATTEMPTS = 12
_BACKOFF = 0.05


def publish_change(settings: Settings, build: RegistryChange, *, registry: Registry | None = None,
                   follower: RegistryFollower | None = None, timeout: float = 30.0) -> list[ModelVersion]:
    """Read the registry to the end, ``build`` a change from it and publish it with no
    other writer in between; returns the records published (folded into ``registry``).

    Writers pick numbers from the registry they read (``next_version``) and rewrite the
    records of the versions they restage, and the last record of a key wins: a writer
    reading a registry a moment out of date would replace another's version. Inside one
    process a lock makes writers take turns. Across processes, under ``exactly_once``,
    every writer shares one transactional id (:func:`writer_id`): ``init_transactions``
    fences the previous holder and completes its transaction (a commit under way ends
    committed, anything else aborted); then the registry is read ``read_committed`` up
    to its last stable offset, so it holds every change committed, and the change is
    committed in a transaction that the broker refuses if another writer fenced this one
    meanwhile. Then it starts again (``build`` is called again, on a fresher registry).
    Under ``at_least_once`` (the embedded broker: no transactions) only the lock and the
    read to the end hold, so writers in separate processes may still collide there.

    ``registry`` and ``follower`` are a worker's live pair, read on in place; without
    them the registry is read from the start in a reader closed on return.
    """
    if (registry is None) != (follower is None):
        raise ValueError("registry and follower go together: the follower reads into that registry")
    reader = follower if follower is not None else RegistryFollower(settings)
    folded = registry if registry is not None else Registry()
    try:
        with _VERSION_LOCK:
            if reader.exact:
                records = _publish_fenced(settings, build, folded, reader, timeout)
            else:
                reader.read_to_end(folded, timeout=timeout)
                records = build(folded)
                publish_records(settings, records, timeout=timeout)
            folded.apply_all(records)
            return records
    finally:
        if follower is None:
            reader.close()


def _publish_fenced(settings: Settings, build: RegistryChange, registry: Registry,
                    follower: RegistryFollower, timeout: float) -> list[ModelVersion]:
    topic, codec, tid = follower.topic, settings.codec(), writer_id(settings)
    deadline = time.monotonic() + timeout
    tried: list[ModelVersion] = []
    last: KafkaError | None = None
    for attempt in range(_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(2.0, _BACKOFF * 2 ** attempt)))
        left = deadline - time.monotonic()
        if left <= 0:
            break
        producer = _writer(settings, tid)
        try:
            producer.init_transactions(left)
            follower.read_to_end(registry, timeout=max(left, 1.0))
            if follower.missing:
                raise RegistryError(f"there is no registry topic {topic}: create the topics first "
                                    "(riverops topics create)")
            if tried and all(_holds(registry, r) for r in tried):
                return tried  # the last commit went through, though it said otherwise
            records = build(registry)
            if not records:
                return []
            producer.begin_transaction()
            tried = records
            for record in records:
                producer.produce(topic, key=record.key, value=codec.encode("ModelVersion", record.to_avro()))
            producer.commit_transaction(max(deadline - time.monotonic(), 1.0))
            return records
        except KafkaException as exc:
            last = exc.args[0]
            raise_if_refused(last, f"writing {topic} with the transactional id {tid}")
            if not _worth_retrying(last):
                raise RegistryError(f"cannot publish to {topic} in a transaction ({last.str()}); a "
                                    "broker without transactions needs "
                                    "RIVEROPS_PROCESSING_GUARANTEE=at_least_once") from exc
            log.info("registry change tried again (%d/%d): %s", attempt + 1, _ATTEMPTS, last.str())
    raise RegistryError(f"could not publish a change to {topic} within {timeout}s "
                        f"({_ATTEMPTS} attempts at most; fenced by other writers?): {last}")


def _writer(settings: Settings, transactional_id: str) -> Producer:
    return make_producer(settings, **{
        "linger.ms": 0,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        "logger": _WriterLog(KAFKA_LOG, {}),
    })


class _WriterLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """librdkafka's lines of a registry writer, at INFO at most: being fenced is how writers
    take turns (it logs "Fatal error ... fenced"), and every failure that matters is raised
    by the transaction calls anyway."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        super().log(min(level, logging.INFO), msg, *args, **kwargs)  # type: ignore[arg-type]


def _worth_retrying(error: KafkaError) -> bool:
    """Fenced, aborted or timed out: a fresh producer may succeed; not when the broker
    cannot do transactions at all."""
    if error.code() == KafkaError._UNSUPPORTED_FEATURE:
        return False
    return bool(error.fatal() or error.txn_requires_abort() or error.retriable())


def _holds(registry: Registry, record: ModelVersion) -> bool:
    try:
        return registry.get(record.model, record.version) == record
    except RegistryError:
        return False


def read_registry(settings: Settings, *, timeout: float = 15.0) -> Registry:
    """The registry as of now, folded from the start of the topic in a fresh consumer."""
    follower = RegistryFollower(settings)
    try:
        return follower.read_to_end(Registry(), timeout=timeout)
    finally:
        follower.close()
