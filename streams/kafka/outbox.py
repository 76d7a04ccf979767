"""The output side of every processor: encode, produce, and know that it was delivered.

At least once (:class:`Outbox`): a processor sends a batch's outputs, then calls
:meth:`Outbox.flush` before it writes the state changes (a changelog's raw records,
flushed in turn) and commits the offsets that the outputs reflect; flush raises when a record was not acknowledged, so the worker stops
instead of committing past lost output. A processor with no state to make durable may
instead hand the offsets to :meth:`Outbox.after_delivery` and go on with its next batch:
it gets them back to commit once everything sent before them was acknowledged.

Exactly once (:class:`TransactionalOutbox`): the outputs, the state changes (raw records
of a changelog) and the consumed offsets of one commit interval are one Kafka
transaction (KIP-447: the offsets carry the consumer's group metadata, so a member that
lost its partitions cannot commit). :meth:`TransactionalOutbox.commit` either commits
all of it or raises :class:`TransactionAborted` after aborting it: then nothing of the
interval is visible to ``read_committed`` readers and the caller must rewind its state
to the committed offsets.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverops.kafka.caller import STUCK_GRACE_SECONDS, Caller, Stuck
from riverops.kafka.clients import make_producer, raise_if_refused
from riverops.schemas.codec import Codec
from riverops.schemas.errors import RiveropsError
from riverops.settings import Settings

__all__ = ["Outbox", "ProducerLost", "TransactionalOutbox", "TransactionAborted", "RawRecord"]

log = logging.getLogger(__name__)

RawRecord = tuple[int, bytes, bytes | None]
"""A record already encoded: (partition, key, value; None is a tombstone)."""

Headers = list[tuple[str, bytes]]
T = TypeVar("T")


class Outbox:
    """Encodes records with the codec and produces them; collects delivery failures."""

    def __init__(self, settings: Settings, *, codec: Codec | None = None, **producer_config: Any) -> None:
        self.codec = codec or settings.codec()
        self.producer = make_producer(settings, **producer_config)
        self.failures: list[Any] = []  # KafkaError of each record not delivered
        self.sent = 0
        # delivery by segment: the records sent between two after_delivery() calls
        self._segment = 0  # the open one, that send() adds to
        self._oldest = 0  # every segment before it is delivered
        self._unacked: dict[int, int] = {}  # segment -> records not yet acknowledged
        self._waiting: deque[tuple[int, Any]] = deque()  # (segment, offsets) for after_delivery

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failures.append(error)

    def _counted(self, segment: int) -> Callable[[Any, Any], None]:
        """:meth:`_on_delivery`, and the record counted as acknowledged in ``segment``."""
        def delivered(error: Any, message: Any) -> None:
            self._on_delivery(error, message)
            self._unacked[segment] -= 1
        return delivered

    def send(
        self,
        topic: str,
        schema: str,
        records: Sequence[dict[str, Any]],
        *,
        key: str,
        time_field: str | None = None,
        headers: Callable[[dict[str, Any]], Headers] | None = None,
    ) -> None:
        """Produce ``records`` keyed by their ``key`` field; ``time_field`` (a datetime)
        becomes the Kafka timestamp, so downstream stream time is event time."""
        payloads = self.codec.encode_many(schema, records)
        segment = self._segment
        self._unacked[segment] = self._unacked.get(segment, 0) + len(records)
        on_delivery = self._counted(segment)
        for record, payload in zip(records, payloads, strict=True):
            extra: dict[str, Any] = {}
            if time_field is not None:
                extra["timestamp"] = int(record[time_field].timestamp() * 1000)
            if headers is not None:
                extra["headers"] = headers(record)
            try:
                self.producer.produce(topic, key=record[key], value=payload, on_delivery=on_delivery, **extra)
            except BufferError:
                self._produce_when_room(topic, key=record[key], value=payload, on_delivery=on_delivery, **extra)
        self.sent += len(records)
        self.producer.poll(0)

    def send_encoded(self, topic: str, records: Sequence[tuple[str, bytes]]) -> None:
        """Produce records already encoded by the caller: (key, payload), partitioned by key."""
        self._produce_all(topic, [{"key": key, "value": value} for key, value in records])

    def send_raw(self, topic: str, records: Sequence[RawRecord]) -> None:
        """Produce encoded records to explicit partitions (a changelog's)."""
        self._produce_all(topic, [{"partition": p, "key": key, "value": value} for p, key, value in records])

    def _produce_all(self, topic: str, records: list[dict[str, Any]]) -> None:
        """Produce each record's keyword arguments, counted in the open delivery segment."""
        segment = self._segment
        self._unacked[segment] = self._unacked.get(segment, 0) + len(records)
        on_delivery = self._counted(segment)
        for record in records:
            try:
                self.producer.produce(topic, on_delivery=on_delivery, **record)
            except BufferError:  # a transactional producer may be replaced meanwhile: looked up again
                self._produce_when_room(topic, on_delivery=on_delivery, **record)
        self.sent += len(records)
        self.producer.poll(0)

    def _produce_when_room(self, topic: str, **record: Any) -> None:
        """Produce once librdkafka's local queue has room (a burst larger than
        ``queue.buffering.max.messages``, or a broker slower than the role): the delivery
        callbacks are served meanwhile; a BufferError never reaches the role."""
        while True:
            self.producer.poll(0.1)
            try:
                self.producer.produce(topic, **record)
                return
            except BufferError:
                continue

    def after_delivery(self, offsets: T, what: str) -> list[T]:
        """Hold ``offsets`` until every record sent so far is acknowledged; the held ones
        whose records all are, oldest first (to commit: nothing waits for the broker). A
        record that failed raises as :meth:`flush` does."""
        self._waiting.append((self._segment, offsets))
        self._segment += 1
        self.producer.poll(0)  # serve the delivery callbacks
        self._check(0, what)
        while self._oldest < self._segment and not self._unacked.get(self._oldest):
            self._unacked.pop(self._oldest, None)
            self._oldest += 1
        ready = []
        while self._waiting and self._waiting[0][0] < self._oldest:
            ready.append(self._waiting.popleft()[1])
        return ready

    def flush(self, what: str, *, timeout: float = 30.0) -> None:
        """Wait for every record; RiveropsError naming ``what`` if any was not delivered
        (AuthorizationError when the broker refused the write). Offsets held by
        :meth:`after_delivery` are dropped: the caller commits newer ones now."""
        self._check(self.producer.flush(timeout), what)
        self._waiting.clear()

    def _check(self, remaining: int, what: str) -> None:
        if remaining or self.failures:
            failures, self.failures = self.failures, []
            for error in failures:  # the first refusal, if any, says most
                raise_if_refused(error, f"writing {what}")
            raise RiveropsError(
                f"{what} not delivered ({remaining} in flight, {len(failures)} failed: "
                f"{[str(e) for e in failures[:3]]}); "
                "offsets not committed"
            )

    def close(self) -> None:
        self.producer.flush(10)


class TransactionAborted(RiveropsError):
    """The interval's transaction was aborted: none of its outputs, state changes or
    offsets took effect; rewind to the committed offsets."""


class ProducerLost(RiveropsError):
    """A replacement transactional producer could not start: the worker must stop, so that
    its group hands its partitions to the other members (a supervisor restarts it; a new
    process starts before it joins the group, so it holds no partition while it waits)."""

    def __init__(self, transactional_id: str, reason: str) -> None:
        super().__init__(f"the transactional producer {transactional_id} could not be replaced ({reason}); "
                         "stopping the worker so that its partitions go to the other members")


class TransactionalOutbox(Outbox):
    """An :class:`Outbox` whose sends, raw records and offsets form one transaction per
    :meth:`commit`; ``transactional_id`` must be unique among live producers (a new
    producer with the same id fences the old one and aborts its open transaction).

    Every failure of an interval ends in :class:`TransactionAborted` with no transaction
    left open: an abortable error is aborted; a producer in a fatal state (fenced when
    the broker timed its transaction out during a long broker freeze, INVALID_TXN_STATE
    when a new coordinator had already completed it, librdkafka issue #3297), or whose
    abort the broker does not answer, is replaced by a new one with the same id, whose
    ``init_transactions`` ends whatever the old one left open. The caller rewinds to the
    committed offsets either way, so replacing it loses nothing. A refusal (ACL) raises
    AuthorizationError; a new producer that cannot start raises RiveropsError.

    ``send_offsets_to_transaction`` may never return: librdkafka ignores its timeout while
    the group coordinator is away (librdkafka issues #5456 and #5511, open in 2.16; seen
    here after a broker restart, with the scorer and the joiner blocked in it for good). So
    it runs on the outbox's own caller thread, waited for at most its timeout plus
    :data:`STUCK_GRACE_SECONDS`; a call still blocked then is given up with its producer,
    as for a fatal error.

    A replacement that cannot start within the transaction timeout (the broker answered
    CONCURRENT_TRANSACTIONS for over 80 s once, after a 20 s broker freeze) raises
    :class:`ProducerLost`: waiting longer would keep the worker's partitions from every
    other member of the group, since its consumer stays in the group meanwhile.
    """

    def __init__(self, settings: Settings, *, transactional_id: str, codec: Codec | None = None,
                 timeout: float = 10.0, **producer_config: Any) -> None:
        self._config: dict[str, Any] = {
            **producer_config,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms,
        }
        super().__init__(settings, codec=codec, **self._config)
        self._settings = settings
        self.transactional_id = transactional_id
        self._timeout = timeout
        self._open = False
        self.renewals = 0
        self._retired: list[Any] = []
        self._caller = self._new_caller()
        self._init(within=START_SECONDS)

    def _new_caller(self) -> Caller:
        return Caller(f"txn-{self.transactional_id}")

    def _bounded(self, call: Callable[[], None], what: str, why: str = "") -> None:
        """``call`` on the caller thread; :class:`Stuck` when it has not returned within
        the timeout plus :data:`STUCK_GRACE_SECONDS` (what it raised, otherwise); ``why``:
        the likely cause, for the message."""
        limit = self._timeout + STUCK_GRACE_SECONDS
        if not self._caller.run(call, limit):
            raise Stuck(f"{what} did not return within {limit:.0f} s" + (f" ({why})" if why else ""))

    def _init(self, within: float) -> None:
        """``init_transactions`` until it succeeds, asked again while the coordinator is
        busy (a cluster just started: "coordinator load in progress"; a transaction of the
        previous producer still being aborted: CONCURRENT_TRANSACTIONS) for at most
        ``within`` seconds; then :class:`ProducerLost` for a replacement, RiveropsError for
        the worker's first producer."""
        deadline = time.monotonic() + within
        while True:
            try:
                self._bounded(lambda: self.producer.init_transactions(self._timeout), "init_transactions")
                return
            except Stuck as exc:  # the producer is unusable: so is its caller thread
                self._caller.close()
                self._caller = self._new_caller()
                raise self._cannot_start(str(exc)) from None
            except KafkaException as exc:
                error = exc.args[0]
                raise_if_refused(error, f"the transactional id {self.transactional_id}")
                busy = error.retriable() or error.code() in _COORDINATOR_BUSY
                if error.fatal() or not busy or time.monotonic() >= deadline:
                    raise self._cannot_start(error.str()) from exc
                log.warning("init_transactions of %s: %s; asking again", self.transactional_id, error.str())

    def _cannot_start(self, reason: str) -> RiveropsError:
        if self.renewals:
            return ProducerLost(self.transactional_id, reason)
        return RiveropsError(f"cannot start transactions ({reason}); a broker without transactions "
                             "(the embedded one) needs RIVEROPS_PROCESSING_GUARANTEE=at_least_once")

    def _renew(self, reason: str, *, stuck: bool = False) -> None:
        """Replace the producer by a new one with the same transactional id (``stuck``: a
        call of the old one never returned and still holds the caller thread)."""
        log.warning("transactional producer %s %s: starting a new one", self.transactional_id, reason)
        if stuck:
            self._caller.close()  # its thread stays blocked in librdkafka
            self._caller = self._new_caller()
        else:
            try:
                self.producer.purge(in_queue=True, in_flight=True, blocking=False)
            except KafkaException:
                pass  # a producer in a fatal state may refuse even that
        # kept, not destroyed: destroying a producer whose transactional call is still in
        # progress inside librdkafka blocks; a few per fault
        self._retired.append(self.producer)
        self.producer = make_producer(self._settings, **self._config)
        self._open = False
        self.failures.clear()
        self.renewals += 1
        self._init(within=self._settings.transaction_timeout_ms / 1000)

    def _fail(self, exc: KafkaException, what: str) -> TransactionAborted:
        """End the interval after ``exc``: the TransactionAborted to raise."""
        error = exc.args[0]
        raise_if_refused(error, what)
        if error.fatal():
            self._renew(f"fenced ({error.str()})")
        else:
            self.abort()
        return TransactionAborted(f"{what}: transaction aborted ({error.str()})")

    def _begin(self) -> None:
        if not self._open:
            self.producer.begin_transaction()
            self._open = True  # from here on, abort() ends it whatever happens

    def send(self, topic: str, schema: str, records: Sequence[dict[str, Any]], *, key: str,
             time_field: str | None = None,
             headers: Callable[[dict[str, Any]], Headers] | None = None) -> None:
        try:
            self._begin()
            super().send(topic, schema, records, key=key, time_field=time_field, headers=headers)
        except KafkaException as exc:
            raise self._fail(exc, f"writing {topic}") from exc

    def send_raw(self, topic: str, records: Sequence[RawRecord]) -> None:
        try:
            self._begin()
            super().send_raw(topic, records)
        except KafkaException as exc:
            raise self._fail(exc, f"writing {topic}") from exc

    def send_encoded(self, topic: str, records: Sequence[tuple[str, bytes]]) -> None:
        try:
            self._begin()
            super().send_encoded(topic, records)
        except KafkaException as exc:
            raise self._fail(exc, f"writing {topic}") from exc

    def commit(self, offsets: Sequence[TopicPartition], group_metadata: Any, what: str) -> None:
        """Commit the open transaction with ``offsets`` as the group's consumed offsets
        (no-op when nothing was sent and there are no offsets); TransactionAborted when
        it could not be committed, after ending it."""
        if not offsets and not self._open:
            return
        try:
            self._begin()
            if offsets:
                self._retrying(lambda: self._bounded(lambda: self.producer.send_offsets_to_transaction(
                    list(offsets), group_metadata, self._timeout), "send_offsets_to_transaction",
                    "librdkafka #5456: the group coordinator was away"))
            self._retrying(lambda: self.producer.commit_transaction(self._timeout))
        except KafkaException as exc:
            raise self._fail(exc, f"committing {what}") from exc
        except Stuck as exc:
            self._renew(str(exc), stuck=True)
            raise TransactionAborted(f"committing {what}: transaction aborted ({exc})") from None
        finally:
            self.failures.clear()  # in a transaction, a failed delivery fails the commit
        self._open = False

    @staticmethod
    def _retrying(call: Callable[[], None], attempts: int = 6) -> None:
        """``call`` again while it fails retriably: a transactional call that timed out is
        still in progress inside librdkafka, and only the same call resumes it (another
        one, an abort say, would wait for it and time out in turn)."""
        for attempt in range(attempts):
            try:
                call()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or attempt == attempts - 1:
                    raise
                log.warning("transactional call retried: %s", error.str())

    def abort(self, *, attempts: int = 3) -> None:
        """Abort the open transaction, if any (its records are never read committed). An
        abort the broker does not answer is asked again, then the producer is replaced
        (its successor's ``init_transactions`` aborts the transaction on the broker)."""
        if not self._open:
            return
        for attempt in range(attempts):
            try:
                self.producer.abort_transaction(self._timeout)
                self._open = False
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal() or attempt == attempts - 1:
                    self._renew(f"cannot abort ({error.str()})")
                    return
                log.warning("abort_transaction not done yet (%s): asking again", error.str())

    def close(self) -> None:
        """Abort what is open and let go of the producer; never raises (a worker closes
        it on its way out, often because of a failure that must stay the one reported)."""
        try:
            self.abort()
            super().close()
        except (KafkaException, RiveropsError) as exc:
            log.warning("closing the transactional producer %s: %s", self.transactional_id, exc)
        finally:
            self._caller.close()


START_SECONDS = 60.0
"""How long a worker's first producer asks for its transactional id (a cluster just started)."""

_COORDINATOR_BUSY = frozenset({KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
                               KafkaError.NOT_COORDINATOR, KafkaError._TIMED_OUT,
                               KafkaError.CONCURRENT_TRANSACTIONS})
