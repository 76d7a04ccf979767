"""The joiner: features, predictions and labels of one event in, one FeedbackEvent out.

Core (:class:`JoinCore`, no Kafka, no clock): joins records arriving in any order, possibly
duplicated or re-delivered, and emits each labelled event once, with every prediction
made for it. State is kept encoded (see :mod:`riverops.roles.joiner.state`); only completed
events are decoded (:mod:`riverops.roles.joiner.feedback`). A pending event expires after ``ttl_ms`` of *stream time*, so expiry is the
same on every replay of the same input. Stream time is the largest *event* time seen: the
timestamp of a features or prediction record. Labels do not move it: a chargeback label 30
days late, read while the features are still on day 0, would move the clock 30 days and
expire every event whose label is on time (seen replaying a label backlog). While no
features arrive, nothing expires. The other side of it: a label read before its features
while the features stream is more than the TTL behind it (a gap in the features longer
than the TTL, or a labels topic caught up far ahead after an outage) expires as an orphan
when the features stream jumps ahead, before its own features are read.

What the shell (:class:`~riverops.roles.joiner.role.JoinerRole`) does:

- per consumed record, ``add(kind, key.decode(), value, timestamp, (topic, partition,
  offset))``: the Kafka key IS the event_id (topic contract) and the Kafka timestamp is
  the record time, so nothing is decoded on the hot path. The timestamp is stored in the
  log, hence identical on replay; producers should set it to event_time / label_time
  (mixing in wall-clock timestamps makes stream time jump ahead); ``skip(source)`` for a
  record it refused itself, so the positions cover it too;
- ``flush()`` after each consumed batch, then produce ``feedback`` (key: ``model``) and
  dead-letter each ``rejected`` (origin, error) pair through the one dead-letter function;
- checkpoint after delivery: write ``changes()`` (each changed event's blob, emitted
  time or removal) and the header ``state(whole=False)`` (clock, consumed positions,
  counts) to the changelog (:mod:`riverops.roles.joiner.changelog`). Restart: ``absorb``
  the changelog's entries into a new core, ``resume`` at its last header and seek to
  ``positions()``; records below them are skipped as re-deliveries. ``snapshot()`` and
  ``restore`` give the whole state as one blob (tests, benchmarks).

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
>>> result.outcomes["joined"], result.rejected, core.positions()[("labels", 0)]
(1, [], 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from riverops.kafka.deadletter import Origin
from riverops.kafka.limits import check_record
from riverops.kafka.topics import Source
from riverops.roles.joiner.feedback import Rejected, feedback_record
from riverops.roles.joiner.results import (
    KINDS,
    OUTCOMES,
    FlushResult,
    JoinInput,
    JoinStats,
    Outcome,
    Rejection,
)
from riverops.roles.joiner.snapshot import NO_TIME, SnapshotState, decode_snapshot, encode_snapshot
from riverops.roles.joiner.spill import BLOBS, TIMES, SpillFile, SpillMap
from riverops.roles.joiner.splice import Splicer
from riverops.roles.joiner.state import Item, Kind, Stored, admit, pack_item, unpack_item
from riverops.schemas.codec import Codec, SingleObjectCodec
from riverops.schemas.errors import ConfigError, InvalidEventError, RiveropsError

__all__ = ["Kind", "KINDS", "Outcome", "OUTCOMES", "Source", "JoinInput", "Rejection", "FlushResult", "JoinStats",
           "JoinCore", "DEFAULT_TTL_MS", "DEFAULT_MEMORY_EVENTS", "ITEM_OVERHEAD"]

DEFAULT_TTL_MS = 7 * 24 * 3600 * 1000
DEFAULT_MEMORY_EVENTS = 50_000
"""Pending events (and, apart, emitted ids) a spilling core keeps in memory per partition."""
ITEM_OVERHEAD = 150
"""Bytes per pending event beyond its blob and key: the bytes and str object headers and
the dict slot (measured by bench/join_memory.py); used by the pending_bytes estimate."""

_SCHEMAS: dict[Kind, str] = {
    "features": "FeatureEvent",
    "prediction": "PredictionEvent",
    "label": "LabelEvent",
}


class JoinCore:
    """Joins one partition's (or a few partitions') features, predictions and labels.

    ``ttl_ms`` is the longest label delay accepted, in stream time; ``codec`` decodes the
    completed events (a SingleObjectCodec also lets the core check every payload's writer
    schema on arrival and slice predictions without decoding them). With ``spill_to`` (a
    file path) the pending events and emitted ids beyond the newest ``memory_events`` of
    each live in that scratch SQLite file (:mod:`riverops.roles.joiner.spill`), made anew
    here and deleted by :meth:`close`; without it everything stays in memory. With
    ``encoded`` a flush gives the feedback as payloads, spliced from the stored bytes
    where their layouts allow (:mod:`riverops.roles.joiner.splice`), else encoded by
    ``codec``.
    """

    def __init__(self, *, ttl_ms: int = DEFAULT_TTL_MS, codec: Codec | None = None,
                 spill_to: Path | None = None, memory_events: int = DEFAULT_MEMORY_EVENTS,
                 encoded: bool = False) -> None:
        if ttl_ms <= 0:
            raise ConfigError(f"the joiner TTL must be positive, got {ttl_ms} ms")
        if spill_to is not None and memory_events < 1:
            raise ConfigError(f"a spilling joiner keeps at least 1 event in memory, got {memory_events}")
        self._ttl = ttl_ms
        self._codec: Codec = codec if codec is not None else SingleObjectCodec()
        self._encoded = encoded
        self._splicer = Splicer.of(self._codec) if encoded else None
        self._tp_index: dict[tuple[str, int], int] = {}
        self._tps: list[tuple[str, int]] = []
        self._positions: list[int] = []
        self._now = NO_TIME
        self._file = None if spill_to is None else SpillFile(spill_to)
        # in first_seen order: expiry pops a prefix
        self._pending = SpillMap(BLOBS, file=self._file, table="pending", memory_items=memory_events)
        self._pending_bytes = 0
        self._ready: dict[str, int] = {}  # complete events -> stream time they completed
        # emitted events -> that time, in time order
        self._done = SpillMap(TIMES, file=self._file, table="done", memory_items=memory_events)
        self._dead: list[Rejection] = []
        self._expired: dict[Kind, int] = dict.fromkeys(KINDS, 0)
        self._counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._flushed = dict(self._counts)
        self._dirty = False
        self._changed: set[str] = set()  # event ids whose state changed since changes()
        self._absorbed = False

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
            self._dead.append((self._origin((tp, offset, payload or b""), event_id), exc))
            return
        done_at = self._done.get(event_id)
        if done_at is not None:
            if done_at >= deadline:
                self._counts["late_predictions" if kind == "prediction" else "duplicates"] += 1
                return
            self._done.discard(event_id)  # expired, as the next flush would have found
            self._changed.add(event_id)
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
        self._pending.put(event_id, new, new=blob is None)
        self._changed.add(event_id)
        self._pending_bytes += len(new) - (len(blob) if blob is not None else -len(event_id))
        if item.complete and event_id not in self._ready:
            self._ready[event_id] = now

    def add_many(self, records: Iterable[JoinInput]) -> None:
        """Take a batch of consumed records, in consumption order."""
        add = self.add
        for kind, event_id, payload, time_ms, source in records:
            add(kind, event_id, payload, time_ms, source)

    def skip(self, source: Source) -> None:
        """A record the shell refused without adding it (dead-lettered: no key, too big).
        When it is the next record of its partition the positions move past it, so a
        restart from the snapshot does not refuse it again; call after the batch's adds,
        in offset order. Past a gap the position stays: re-reading costs a repeated dead
        letter, skipping an unseen record would lose it."""
        topic, partition, offset = source
        tp = self._tp_index.get((topic, partition))
        if tp is None:  # the first record of a partition sets its start, as in add()
            self._tp_index[(topic, partition)] = len(self._tps)
            self._tps.append((topic, partition))
            self._positions.append(offset + 1)
        elif offset == self._positions[tp]:
            self._positions[tp] = offset + 1

    # -- output --------------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Emit every completed event, expire what outlived the TTL; call after each batch."""
        feedback: list[dict[str, Any]] = []
        encoded: list[tuple[str, bytes]] = []
        for event_id, done_at in self._ready.items():
            blob = self._pending.get(event_id)
            assert blob is not None  # a ready event is pending until this flush
            self._remove(event_id, blob)
            try:
                if self._encoded:
                    encoded.append(self._payload(event_id, unpack_item(blob)))
                else:
                    feedback.append(feedback_record(event_id, unpack_item(blob), self._codec))
                self._counts["joined"] += 1
            except Rejected as rejected:
                self._counts["invalid"] += 1
                self._dead.append((self._origin(rejected.stored, event_id), rejected.error))
            self._done.put(event_id, done_at, new=True)  # add() refuses the records of emitted events
            self._changed.add(event_id)
        self._ready.clear()
        deadline = self._now - self._ttl
        for event_id, blob in self._pending.pop_older(deadline):
            self._pending_bytes -= len(blob) + len(event_id)
            self._changed.add(event_id)
            self._expire(event_id, unpack_item(blob))
        self._changed.update(event_id for event_id, _ in self._done.pop_older(deadline))
        if self._pending.spill() + self._done.spill() and self._file is not None:
            self._file.checkpoint()
        dead, self._dead = self._dead, []
        kinds, self._expired = self._expired, dict.fromkeys(KINDS, 0)
        outcomes = {name: self._counts[name] - self._flushed[name] for name in OUTCOMES}
        self._flushed = dict(self._counts)
        self._dirty = False
        return FlushResult(feedback, dead, outcomes, kinds, encoded)

    def _payload(self, event_id: str, item: Item) -> tuple[str, bytes]:
        """(model, FeedbackEvent payload): spliced, else decoded and encoded again."""
        spliced = self._splicer.splice(event_id, item) if self._splicer is not None else None
        if spliced is not None:
            return spliced
        record = feedback_record(event_id, item, self._codec)
        return record["model"], self._codec.encode("FeedbackEvent", record)

    def _expire(self, event_id: str, item: Item) -> None:
        """Count an item that outlived the TTL; a label that never joined is dead-lettered."""
        self._expired["features"] += item.features is not None
        self._expired["prediction"] += len(item.predictions)
        self._expired["label"] += item.label is not None
        if item.label is None:
            self._counts["expired_unlabelled"] += 1
            return
        self._counts["orphan_labels"] += 1
        missing = " and ".join(
            name for name, has in (("features", item.features), ("prediction", item.predictions))
            if not has
        )
        error = InvalidEventError(f"label without {missing} within TTL {self._ttl / 1000:g}s")
        self._dead.append((self._origin(item.label, event_id), error))

    def _origin(self, stored: Stored, event_id: str) -> Origin:
        """Where a stored record came from, with its key and raw payload (the dead letter
        carries them; a DecodeError's own raw bytes take precedence there)."""
        tp, offset, payload = stored
        topic, partition = self._tps[tp]
        return Origin((topic, partition, offset), event_id.encode(), payload or None)

    def _remove(self, event_id: str, blob: bytes) -> None:
        self._pending.discard(event_id)
        self._changed.add(event_id)
        self._pending_bytes -= len(blob) + len(event_id)

    # -- inspection and checkpoints ------------------------------------------------------

    def stats(self) -> JoinStats:
        """Gauges and cumulative outcome counts."""
        pending = len(self._pending)
        return JoinStats(
            pending=pending,
            pending_bytes=self._pending_bytes + pending * ITEM_OVERHEAD,
            done=len(self._done),
            pending_on_disk=self._pending.on_disk,
            done_on_disk=self._done.on_disk,
            stream_time_ms=None if self._now == NO_TIME else self._now,
            **self._counts,
        )

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to consume per (topic, partition): what the state reflects."""
        return dict(zip(self._tps, self._positions, strict=True))

    def snapshot(self) -> bytes:
        """The whole state as versioned, checksummed bytes (see riverops.roles.joiner.snapshot); only
        between batches, right after :meth:`flush`, so no output is left behind."""
        self._changed.clear()  # the snapshot holds them all
        return encode_snapshot(self.state(whole=True))

    def state(self, *, whole: bool) -> SnapshotState:
        """Clock, positions and counts, with the pending and done entries when ``whole``
        (without them: the header a changelog stores beside its per-event records)."""
        if self._dirty:
            raise RiveropsError("the state of a JoinCore is only taken flushed: call flush() first")
        return SnapshotState(
            self._now, list(self._tps), list(self._positions), {str(k): v for k, v in self._counts.items()},
            self._pending.as_dict() if whole else {}, self._done.as_dict() if whole else {},
        )

    def changes(self) -> list[tuple[str, bytes | None, int | None]]:
        """The events whose state changed since the last call (or snapshot): (event id,
        pending blob or None, emitted-at stream time or None); both None: forgotten."""
        if self._dirty:
            raise RiveropsError("JoinCore.changes() needs a flushed core: call flush() first")
        pending, done = self._pending, self._done
        changed = [(event_id, pending.get(event_id), done.get(event_id)) for event_id in self._changed]
        self._changed.clear()
        return changed

    @classmethod
    def restore(cls, data: bytes, *, ttl_ms: int = DEFAULT_TTL_MS, codec: Codec | None = None,
                spill_to: Path | None = None, memory_events: int = DEFAULT_MEMORY_EVENTS) -> JoinCore:
        """A core in the state of a snapshot; DecodeError if ``data`` is not a valid one."""
        return cls.from_state(decode_snapshot(data), ttl_ms=ttl_ms, codec=codec, spill_to=spill_to,
                              memory_events=memory_events)

    @classmethod
    def from_state(cls, state: SnapshotState, *, ttl_ms: int = DEFAULT_TTL_MS, codec: Codec | None = None,
                   spill_to: Path | None = None, memory_events: int = DEFAULT_MEMORY_EVENTS) -> JoinCore:
        """A core in ``state`` (pending entries in first-seen order, done ones in time order)."""
        core = cls(ttl_ms=ttl_ms, codec=codec, spill_to=spill_to, memory_events=memory_events)
        core._pending.load(state.pending)
        core._done.load(state.done)
        core.resume(state)
        return core

    def absorb(self, pending: Iterable[tuple[str, bytes | None]], done: Iterable[tuple[str, int | None]]) -> None:
        """Restore, a chunk of a changelog at a time, into a new core: entries in log order
        (None: the event is no longer there), the last of each event wins; then
        :meth:`resume` with the changelog's header. Spilling cores write them to disk."""
        self._pending.absorb(pending)
        self._done.absorb(done)
        self._absorbed = True

    def resume(self, header: SnapshotState) -> None:
        """Take the clock, positions and counts of ``header`` (after the entries, by
        :meth:`absorb` or :meth:`from_state`)."""
        if self._absorbed:
            self._pending.sort()
            self._done.sort()
        self._tps = list(header.partitions)
        self._tp_index = {tp: index for index, tp in enumerate(self._tps)}
        self._positions = list(header.positions)
        self._now = header.stream_time
        self._pending_bytes = self._pending.stored_bytes()
        for name in OUTCOMES:
            self._counts[name] = header.counts.get(name, 0)
        self._flushed = dict(self._counts)

    def close(self) -> None:
        """Delete the spill file (the state is gone with it: a revoke, a stop)."""
        if self._file is not None:
            self._file.close()
            self._file = None
