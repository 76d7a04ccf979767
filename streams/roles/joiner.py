"""The joiner: features, predictions and labels of one event in, one FeedbackEvent out.

Core (:class:`JoinCore`, no Kafka, no clock): joins records arriving in any order, possibly
duplicated or re-delivered, and emits each labelled event once, with every prediction
made for it. State is kept encoded (see :mod:`riverops.roles.joinstate`); only completed events
are decoded. A pending event expires after ``ttl_ms`` of *stream time*, so expiry is the
same on every replay of the same input. Stream time is the largest *event* time seen: the
timestamp of a features or prediction record. Labels do not move it: a chargeback label 30
days late, read while the features are still on day 0, would move the clock 30 days and
expire every event whose label is on time (seen replaying a label backlog). While no
features arrive, nothing expires. The other side of it: a label read before its features
while the features stream is more than the TTL behind it (a gap in the features longer
than the TTL, or a labels topic caught up far ahead after an outage) expires as an orphan
when the features stream jumps ahead, before its own features are read.

What the shell (the Kafka loop around this core) does:

- per consumed record, ``add(kind, key.decode(), value, timestamp, (topic, partition,
  offset))``: the Kafka key IS the event_id (topic contract) and the Kafka timestamp is
  the record time, so nothing is decoded on the hot path. The timestamp is stored in the
  log, hence identical on replay; producers should set it to event_time / label_time
  (mixing in wall-clock timestamps makes stream time jump ahead);
- ``flush()`` after each consumed batch, then produce ``feedback`` (key: ``model``) and
  ``dead_letters`` (key: their ``key``);
- checkpoint after delivery: store ``snapshot()`` (consumed positions included) and
  commit ``replay_from()`` as the group's offsets. Restart: ``restore`` the snapshot and
  seek to ``positions()``; records below them are skipped as re-deliveries. Without a
  usable snapshot, a fresh core consuming from the committed ``replay_from()`` offsets
  rebuilds every pending event, but may emit again events already emitted after those
  offsets (the done set is in the snapshot only): at-least-once, dedupe by event_id.

Limitation: the done set keeps event ids only, so a prediction arriving after its event
was emitted is counted ``late_predictions`` (not added, not told apart from a re-scored
duplicate); the feedback holds the predictions that arrived by the flush that emitted it.

Examples
--------
>>> from riverops.schemas.codec import SingleObjectCodec
>>> codec = SingleObjectCodec()
>>> features = codec.encode("FeatureEvent", {"event_id": "e1", "model": "fraud",
...     "entity_id": "card-1", "event_time": 1000, "features": {"amount": 12.5}})
>>> label = codec.encode("LabelEvent", {"event_id": "e1", "model": "fraud",
...     "label": True, "label_time": 9000})
>>> prediction = codec.encode("PredictionEvent", {"event_id": "e1", "model": "fraud",
...     "version": 3, "variant": "champion", "prediction": False, "scores": {},
...     "latency": 0.001, "event_time": 1000, "predicted_at": 1002})
>>> core = JoinCore(ttl_ms=60_000)
>>> core.add("label", "e1", label, 9000, ("labels", 0, 0))
>>> core.add("features", "e1", features, 1000, ("features", 0, 0))
>>> core.add("prediction", "e1", prediction, 1002, ("predictions", 0, 0))
>>> result = core.flush()
>>> [(r["event_id"], r["label"], len(r["predictions"])) for r in result.feedback]
[('e1', True, 1)]
>>> result.outcomes["joined"], core.positions()[("labels", 0)]
(1, 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, get_args

from riverops.kafka.deadletter import bounded
from riverops.kafka.limits import check_record
from riverops.roles.joinsnapshot import NO_TIME, SnapshotState, decode_snapshot, encode_snapshot
from riverops.roles.joinstate import (
    Item,
    Kind,
    Stored,
    admit,
    decode_compact,
    first_seen_of,
    pack_item,
    refs_of,
    unpack_item,
)
from riverops.schemas.codec import Codec, SingleObjectCodec
from riverops.schemas.errors import ConfigError, DecodeError, InvalidEventError, RiveropsError

__all__ = [
    "Kind",
    "Outcome",
    "OUTCOMES",
    "Source",
    "JoinInput",
    "FlushResult",
    "JoinStats",
    "JoinCore",
    "DEFAULT_TTL_MS",
    "ITEM_OVERHEAD",
]

Outcome = Literal[
    "joined",  # feedback emitted
    "duplicates",  # a record for an event that already has it (or was already emitted)
    "redelivered",  # a record below the consumed position of its partition, skipped
    "late_predictions",  # a prediction for an event already emitted: not in its feedback
    "expired_unlabelled",  # features/predictions that got no label within the TTL
    "orphan_labels",  # labels without features or prediction within the TTL: dead-lettered
    "invalid",  # undecodable or inconsistent records: dead-lettered
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
Source = tuple[str, int, int]
"""(topic, partition, offset) of a consumed record."""

DEFAULT_TTL_MS = 7 * 24 * 3600 * 1000
ITEM_OVERHEAD = 150
"""Bytes per pending event beyond its blob and key: the bytes and str object headers and
the dict slot (measured by bench/join_memory.py); used by the pending_bytes estimate."""

_SCHEMAS: dict[Kind, str] = {
    "features": "FeatureEvent",
    "prediction": "PredictionEvent",
    "label": "LabelEvent",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class JoinInput(NamedTuple):
    """One consumed record as the core needs it (the arguments of :meth:`JoinCore.add`)."""

    kind: Kind
    event_id: str
    payload: bytes | None
    time_ms: int
    source: Source


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush emits: FeedbackEvent and DeadLetter record dicts (ready for
    ``codec.encode``) and the outcome counts of the records added since the last flush."""

    feedback: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    outcomes: dict[Outcome, int]


@dataclass(frozen=True, slots=True)
class JoinStats:
    """Gauges and cumulative outcome counts, for metrics and the status view."""

    pending: int
    pending_bytes: int  # blobs and keys plus ITEM_OVERHEAD per event: an estimate
    done: int
    stream_time_ms: int | None
    joined: int
    duplicates: int
    redelivered: int
    late_predictions: int
    expired_unlabelled: int
    orphan_labels: int
    invalid: int


class _Rejected(Exception):
    """A complete event that cannot become feedback, with the record to dead-letter."""

    def __init__(self, stored: Stored, error: RiveropsError) -> None:
        super().__init__(str(error))
        self.stored = stored
        self.error = error


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class JoinCore:
    """Joins one partition's (or a few partitions') features, predictions and labels.

    ``ttl_ms`` is the longest label delay accepted, in stream time; ``codec`` decodes the
    completed events (a SingleObjectCodec also lets the core check every payload's writer
    schema on arrival and slice predictions without decoding them); ``processor`` names
    the dead letters' origin.
    """

    def __init__(
        self,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        codec: Codec | None = None,
        processor: str = "joiner",
    ) -> None:
        if ttl_ms <= 0:
            raise ConfigError(f"the joiner TTL must be positive, got {ttl_ms} ms")
        self._ttl = ttl_ms
        self._codec: Codec = codec if codec is not None else SingleObjectCodec()
        self._processor = processor
        self._tp_index: dict[tuple[str, int], int] = {}
        self._tps: list[tuple[str, int]] = []
        self._positions: list[int] = []
        self._now = NO_TIME
        self._pending: dict[str, bytes] = {}  # in first_seen order: expiry pops a prefix
        self._pending_bytes = 0
        self._ready: dict[str, int] = {}  # complete events -> stream time they completed
        self._done: dict[str, int] = {}  # emitted events -> that time, in time order
        self._dead: list[dict[str, Any]] = []
        self._counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._flushed = dict(self._counts)
        self._dirty = False

    # -- input ---------------------------------------------------------------------------

    def add(self, kind: Kind, event_id: str, payload: bytes | None, time_ms: int,
            source: Source) -> None:
        """Take one consumed record (``kind`` from its topic, the key, value, timestamp)."""
        self._dirty = True
        topic, partition, offset = source
        tp = self._tp_index.get((topic, partition))
        if tp is None:
            tp = self._tp_index[(topic, partition)] = len(self._tps)
            self._tps.append((topic, partition))
            self._positions.append(offset)
        if offset < self._positions[tp]:
            self._counts["redelivered"] += 1
            return
        self._positions[tp] = offset + 1
        if time_ms > self._now and (kind != "label" or self._now == NO_TIME):
            self._now = time_ms  # a label starts the clock, but never moves it
        now, deadline = self._now, self._now - self._ttl
        try:
            if not event_id:
                raise InvalidEventError(f"{_SCHEMAS[kind]}: empty event_id (the Kafka key)")
            too_big = check_record(event_id, payload)
            if too_big is not None:  # its feedback or dead letter would not fit the broker
                raise too_big
            sliced = admit(_SCHEMAS[kind], payload, self._codec)
        except RiveropsError as exc:
            self._counts["invalid"] += 1
            self._dead.append(self._letter((tp, offset, payload or b""), event_id, exc, now))
            return
        done_at = self._done.get(event_id)
        if done_at is not None:
            if done_at >= deadline:
                self._counts["late_predictions" if kind == "prediction" else "duplicates"] += 1
                return
            del self._done[event_id]  # expired, as the next flush would have found
        blob = self._pending.get(event_id)
        item = Item(now) if blob is None else unpack_item(blob)
        if blob is not None and item.first_seen < deadline and event_id not in self._ready:
            self._remove(event_id, blob)  # expired before this record: it starts afresh
            self._expire(event_id, item)
            item, blob = Item(now), None
        assert payload is not None  # admit() refused tombstones
        if not item.merge(kind, (tp, offset, payload), sliced):
            self._counts["duplicates"] += 1
            return
        new = pack_item(item)
        self._pending[event_id] = new
        self._pending_bytes += len(new) - (len(blob) if blob is not None else -len(event_id))
        if item.complete and event_id not in self._ready:
            self._ready[event_id] = now

    def add_many(self, records: Iterable[JoinInput]) -> None:
        """Take a batch of consumed records, in consumption order."""
        add = self.add
        for kind, event_id, payload, time_ms, source in records:
            add(kind, event_id, payload, time_ms, source)

    # -- output --------------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Emit every completed event, expire what outlived the TTL; call after each batch."""
        feedback = []
        for event_id, done_at in self._ready.items():
            blob = self._pending[event_id]
            self._remove(event_id, blob)
            try:
                feedback.append(self._emit(event_id, unpack_item(blob)))
                self._counts["joined"] += 1
            except _Rejected as rejected:
                self._counts["invalid"] += 1
                self._dead.append(self._letter(rejected.stored, event_id, rejected.error, self._now))
            self._done[event_id] = done_at
        self._ready.clear()
        deadline = self._now - self._ttl
        expired = []
        for event_id, blob in self._pending.items():
            if first_seen_of(blob) >= deadline:
                break
            expired.append((event_id, blob))
        for event_id, blob in expired:
            self._remove(event_id, blob)
            self._expire(event_id, unpack_item(blob))
        stale = []
        for event_id, done_at in self._done.items():
            if done_at >= deadline:
                break
            stale.append(event_id)
        for event_id in stale:
            del self._done[event_id]
        dead, self._dead = self._dead, []
        outcomes = {name: self._counts[name] - self._flushed[name] for name in OUTCOMES}
        self._flushed = dict(self._counts)
        self._dirty = False
        return FlushResult(feedback, dead, outcomes)

    def _emit(self, event_id: str, item: Item) -> dict[str, Any]:
        """The FeedbackEvent record of a complete item; _Rejected if its features or label
        do not decode or do not belong together."""
        assert item.features is not None and item.label is not None
        try:
            features = self._codec.decode("FeatureEvent", item.features[2])
        except DecodeError as exc:
            raise _Rejected(item.features, exc) from exc
        try:
            label = self._codec.decode("LabelEvent", item.label[2])
        except DecodeError as exc:
            raise _Rejected(item.label, exc) from exc
        if features["event_id"] != event_id:
            why = f"features event_id {features['event_id']!r} is not the key {event_id!r}"
            raise _Rejected(item.features, InvalidEventError(why))
        if label["event_id"] != event_id or label["model"] != features["model"]:
            why = (f"label of {label['event_id']!r} for model {label['model']!r} does not match "
                   f"features of {event_id!r} for model {features['model']!r}")
            raise _Rejected(item.label, InvalidEventError(why))
        predictions = sorted(item.predictions, key=lambda p: (p[3], p[2]))  # variant, version
        return {
            "event_id": event_id,
            "model": features["model"],
            "entity_id": features["entity_id"],
            "event_time": features["event_time"],
            "features": features["features"],
            "label": label["label"],
            "label_time": label["label_time"],
            "predictions": [decode_compact(p[4]) for p in predictions],
        }

    def _expire(self, event_id: str, item: Item) -> None:
        """Count an item that outlived the TTL; a label that never joined is dead-lettered."""
        if item.label is None:
            self._counts["expired_unlabelled"] += 1
            return
        self._counts["orphan_labels"] += 1
        missing = " and ".join(
            name for name, has in (("features", item.features), ("prediction", item.predictions))
            if not has
        )
        error = InvalidEventError(f"label without {missing} within TTL {self._ttl / 1000:g}s")
        self._dead.append(self._letter(item.label, event_id, error, item.first_seen + self._ttl))

    def _letter(self, stored: Stored, event_id: str, error: RiveropsError, at_ms: int
                ) -> dict[str, Any]:
        """The DeadLetter record of a stored record; failed_at is stream time (no clock)."""
        tp, offset, payload = stored
        topic, partition = self._tps[tp]
        raw = error.raw if isinstance(error, DecodeError) and error.raw else payload
        key, value, reason = bounded(event_id.encode(), raw or None, str(error))
        return {
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "key": key,
            "value": value,
            "error_type": type(error).__name__,
            "reason": reason,
            "processor": self._processor,
            "failed_at": _utc(at_ms),
        }

    def _remove(self, event_id: str, blob: bytes) -> None:
        del self._pending[event_id]
        self._pending_bytes -= len(blob) + len(event_id)

    # -- inspection and checkpoints ------------------------------------------------------

    def stats(self) -> JoinStats:
        """Gauges and cumulative outcome counts."""
        pending = len(self._pending)
        return JoinStats(
            pending=pending,
            pending_bytes=self._pending_bytes + pending * ITEM_OVERHEAD,
            done=len(self._done),
            stream_time_ms=None if self._now == NO_TIME else self._now,
            **self._counts,
        )

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to consume per (topic, partition): what the state reflects."""
        return dict(zip(self._tps, self._positions, strict=True))

    def replay_from(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the smallest offset a pending event still holds (else the
        next offset): replaying from there rebuilds the pending state. O(pending)."""
        lowest = list(self._positions)
        for blob in self._pending.values():
            for tp, offset in refs_of(blob):
                if offset < lowest[tp]:
                    lowest[tp] = offset
        return dict(zip(self._tps, lowest, strict=True))

    def snapshot(self) -> bytes:
        """The whole state as versioned, checksummed bytes (see riverops.roles.joinsnapshot); only
        between batches, right after :meth:`flush`, so no output is left behind."""
        if self._dirty:
            raise RiveropsError("JoinCore.snapshot() needs a flushed core: call flush() first")
        state = SnapshotState(
            self._now, self._tps, self._positions, {str(k): v for k, v in self._counts.items()},
            self._pending, self._done,
        )
        return encode_snapshot(state)

    @classmethod
    def restore(
        cls,
        data: bytes,
        *,
        ttl_ms: int = DEFAULT_TTL_MS,
        codec: Codec | None = None,
        processor: str = "joiner",
    ) -> JoinCore:
        """A core in the state of a snapshot; DecodeError if ``data`` is not a valid one."""
        state = decode_snapshot(data)
        core = cls(ttl_ms=ttl_ms, codec=codec, processor=processor)
        core._tps = state.partitions
        core._tp_index = {tp: index for index, tp in enumerate(state.partitions)}
        core._positions = state.positions
        core._now = state.stream_time
        core._pending = state.pending
        core._pending_bytes = sum(len(blob) + len(key) for key, blob in state.pending.items())
        core._done = state.done
        for name in OUTCOMES:
            core._counts[name] = state.counts.get(name, 0)
        core._flushed = dict(core._counts)
        return core
