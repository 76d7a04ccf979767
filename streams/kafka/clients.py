"""Kafka clients built the riverops way from the settings.

Producers are idempotent with ``acks=all``; consumers never auto-commit and never
auto-store offsets: a processor stores an offset only after the output it caused was
delivered (at-least-once, made exact by idempotent processing downstream).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from riverops.schemas.errors import AuthorizationError
from riverops.settings import Settings

log = logging.getLogger(__name__)

KAFKA_LOG = logging.getLogger("riverops.librdkafka")
"""The logger librdkafka's own log lines go to (connection failures, broker state): through
Python logging, so the application picks their level and format instead of librdkafka
writing raw ``%3|...|FAIL|`` lines to stderr. They reach it when the client is polled."""

__all__ = ["make_producer", "make_consumer", "make_admin", "consume_batch", "next_offsets", "ok",
           "high_watermarks", "reached", "at_end",
           "commit", "committed_offsets", "past_markers", "raise_if_refused", "on_client_error", "KAFKA_LOG"]

# Commit failures that mean "the group moved on or the coordinator is away": the member
# was dropped (a session that timed out while the broker was frozen, a long pause), a
# rebalance is running, or the request timed out. Retriable librdkafka errors also count.
_SKIPPABLE_COMMIT_ERRORS = frozenset({
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._STATE,
    KafkaError._WAIT_COORD,
})


# Errors that mean the broker refused this principal: retrying cannot help
_REFUSALS = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
})


def raise_if_refused(error: KafkaError | None, where: str) -> None:
    """AuthorizationError when ``error`` is the broker refusing this principal."""
    if error is not None and error.code() in _REFUSALS:
        raise AuthorizationError(
            f"the broker refused {where}: {error.str()} (check this role's credentials and the "
            "ACLs of docs/security.md: riverops acls)"
        )


def on_client_error(error: KafkaError) -> None:
    """librdkafka's ``error_cb``: a refusal (wrong credentials, say) raises out of the
    client call that met it (poll, consume, flush), so the worker stops saying why instead
    of reconnecting forever; other errors are logged, librdkafka retries them."""
    raise_if_refused(error, "the connection")
    log.warning("kafka client: %s", error.str())


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer that batches (``linger.ms=5``) and compresses with lz4."""
    config = settings.kafka_config(
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "batch.num.messages": 10_000,
            # Java's partitioner: producers in any language put an event_id on the same
            # partition, which the joins rely on
            "partitioner": "murmur2_random",
            "error_cb": on_client_error,
            "logger": KAFKA_LOG,
        }
    )
    config.update(overrides)
    return Producer(config)


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer in ``group_id`` that reads from the earliest offset and commits by hand."""
    config = settings.kafka_config(
        **{
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "session.timeout.ms": settings.session_timeout_ms,
            "enable.partition.eof": False,
            # riverops' own outputs are transactional: never read an aborted or open one
            "isolation.level": "read_committed",
            "queued.max.messages.kbytes": settings.consumer_queue_kbytes,
            "error_cb": on_client_error,
            "logger": KAFKA_LOG,
        }
    )
    config.update(overrides)
    return Consumer(config)


def make_admin(settings: Settings, **overrides: Any) -> AdminClient:
    """An AdminClient whose librdkafka log lines go to :data:`KAFKA_LOG`.

    An admin client serves its log lines and ``error_cb`` only in ``poll()``: a long-lived
    one should be polled now and then, or they queue up in memory.
    """
    config = settings.kafka_config(**{"logger": KAFKA_LOG})
    config.update(overrides)
    return AdminClient(config)


def consume_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to ``max_messages`` records: waits up to ``timeout`` for the first one only, then
    takes what the client has already fetched.

    ``consume(n, timeout)`` waits until it has ``n`` records or the timeout passed, so under
    a light load every record waited the whole timeout (100 ms of the scorer's latency at
    5k events/s). This returns as soon as there is anything, and under load the fetched
    queue holds a full batch anyway: same records, same order, same batch sizes when busy.
    """
    first = consumer.consume(1, timeout)
    if not first or max_messages <= 1:
        return first
    return first + consumer.consume(max_messages - 1, 0)


def next_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """The offsets to commit after ``messages``: one past the last, per topic-partition."""
    highest: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            continue
        highest[(topic, partition)] = max(highest.get((topic, partition), -1), offset)
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]


def high_watermarks(consumer: Consumer, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The high watermark of each partition as this consumer last learned it while fetching
    (no broker round trip); partitions whose watermark it does not know yet are left out.

    Cached watermarks, not fresh queries: the embedded broker answers fresh watermark
    queries wrongly for batched records."""
    highs = {}
    for topic, partition in partitions:
        try:
            high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)[1]
        except KafkaException:
            continue
        if high >= 0:
            highs[(topic, partition)] = high
    return highs


def reached(consumer: Consumer, ends: dict[tuple[str, int], int]) -> bool:
    """True when the consumer's position on each partition of ``ends`` is at or past it."""
    ends = {key: end for key, end in ends.items() if end > 0}  # empty: nothing to reach
    if not ends:
        return True
    try:
        positions = consumer.position([TopicPartition(t, p) for t, p in ends])
    except KafkaException:
        return False
    return all(p.offset >= ends[(p.topic, p.partition)] for p in positions)


def at_end(consumer: Consumer, partitions: Iterable[tuple[str, int]]) -> bool:
    """The one "caught up" check: every partition read up to its high watermark (False
    while a watermark is still unknown)."""
    wanted = list(partitions)
    highs = high_watermarks(consumer, wanted)
    return len(highs) == len(set(wanted)) and reached(consumer, highs)


def ok(message: Message) -> bool:
    """False for a consumer error event (logged); True for a record, tombstones included.

    A refusal by the broker (authorization, authentication) raises AuthorizationError.
    """
    error = message.error()
    if error is None:
        return True
    raise_if_refused(error, f"reading {message.topic()}")
    log.warning("consumer error on %s[%s]: %s", message.topic(), message.partition(), error)
    return False


def committed_offsets(consumer: Consumer, partitions: list[TopicPartition], who: str
                      ) -> dict[tuple[str, int], int] | None:
    """The group's committed offsets of ``partitions`` (those with one); None, with a
    warning naming ``who``, when the broker cannot say yet: unreachable, or a partition's
    own error (UNSTABLE_OFFSET_COMMIT while a transaction on it is still open), which must
    never read as "no committed offset" (that would start the partition over)."""
    try:
        found = consumer.committed(partitions, timeout=10)
    except KafkaException as exc:
        log.warning("%s: could not read committed offsets (%s)", who, exc)
        return None
    failed = [tp for tp in found if tp.error is not None]
    if failed:
        log.warning("%s: could not read the committed offset of %s[%s] (%s)", who,
                    failed[0].topic, failed[0].partition, failed[0].error)
        return None
    return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}


def past_markers(consumer: Consumer, consumed: dict[tuple[str, int], int]) -> None:
    """Move each consumed offset over the transaction markers after its last record: the
    consumer's position skips them, a record's offset + 1 does not, and a group committed
    short of them shows a lag of 1 for good. The position never passes a record not yet
    handled if nothing is consumed between handling and committing."""
    if not consumed:
        return
    for tp in consumer.position([TopicPartition(t, p) for t, p in consumed]):
        key = (tp.topic, tp.partition)
        if tp.error is None and tp.offset > consumed.get(key, tp.offset):
            consumed[key] = tp.offset


def commit(consumer: Consumer, offsets: list[TopicPartition], *, asynchronous: bool = False) -> bool:
    """Commit ``offsets`` (``asynchronous``: sent, its result to the consumer's
    ``on_commit``); False (with a warning) when the group moved on.

    Offsets are committed after the outputs they reflect were delivered, so a commit that
    fails only means those inputs are read again, by this worker or the partition's new
    owner, and processed again (dropped downstream by event id): at-least-once holds. A
    worker that stopped on such an error would turn a broker pause or a rebalance into an
    outage; other commit errors still raise.
    """
    if not offsets:
        return True
    try:
        if asynchronous:
            consumer.commit(offsets=offsets, asynchronous=True)
        else:
            consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        error = exc.args[0]
        if not isinstance(error, KafkaError) or not (
            error.code() in _SKIPPABLE_COMMIT_ERRORS or error.retriable()
        ):
            raise
        log.warning("commit of %d offsets skipped (%s): the records will be read again",
                    len(offsets), error.str())
        return False
    return True
