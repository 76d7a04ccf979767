"""The joiner's snapshot format: versioned, length-prefixed, checksummed, pickle-free.

A snapshot is written by the worker and read back after a crash, possibly from a file or
topic someone else could touch, so it is plain bytes parsed with bounds checks (never
pickle): a corrupt or crafted snapshot raises :class:`~riverops.schemas.errors.DecodeError`, it
cannot run code. Pending blobs are stored as they are in memory (see
:mod:`riverops.roles.joiner.state`), so writing and reading cost little more than a copy.

Layout (little-endian)::

    b"RJOIN" | format version B | stream time q
    topic-partitions I, each: topic length H | partition i | next offset q | topic
    counters H, each: name length B | value q | name
    pending Q, each: key length H | blob length I | key | blob
    done Q, each: key length H | done-at time q | key
    CRC-32 of all the above I

Examples
--------
>>> state = SnapshotState(stream_time=7, partitions=[("labels", 0)], positions=[3],
...     counts={"joined": 1}, pending={}, done={"e1": 7})
>>> decode_snapshot(encode_snapshot(state)) == state
True
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from riverops.roles.joiner.state import check_item
from riverops.schemas.errors import DecodeError

__all__ = ["FORMAT_VERSION", "NO_TIME", "SnapshotState", "encode_snapshot", "decode_snapshot"]

FORMAT_VERSION = 1
NO_TIME = -(2**63)
"""The stream time before the first record."""

_MAGIC = b"RJOIN"
_HEADER = struct.Struct("<5sBq")
_COUNT32 = struct.Struct("<I")
_COUNT16 = struct.Struct("<H")
_COUNT64 = struct.Struct("<Q")
_TP = struct.Struct("<Hiq")
_COUNTER = struct.Struct("<Bq")
_PENDING = struct.Struct("<HI")
_DONE = struct.Struct("<Hq")
_CRC = struct.Struct("<I")


@dataclass(slots=True)
class SnapshotState:
    """Everything a JoinCore needs to resume: consumed positions, clocks, counters, state."""

    stream_time: int
    partitions: list[tuple[str, int]]
    positions: list[int]
    counts: dict[str, int]
    pending: Mapping[str, bytes]
    done: Mapping[str, int]


def encode_snapshot(state: SnapshotState) -> bytes:
    """The snapshot bytes of ``state``."""
    parts = [_HEADER.pack(_MAGIC, FORMAT_VERSION, state.stream_time)]
    parts.append(_COUNT32.pack(len(state.partitions)))
    for (topic, partition), position in zip(state.partitions, state.positions, strict=True):
        name = topic.encode()
        parts += (_TP.pack(len(name), partition, position), name)
    parts.append(_COUNT16.pack(len(state.counts)))
    for counter, value in state.counts.items():
        name = counter.encode()
        parts += (_COUNTER.pack(len(name), value), name)
    parts.append(_COUNT64.pack(len(state.pending)))
    pack_pending = _PENDING.pack
    for key, blob in state.pending.items():
        name = key.encode()
        parts += (pack_pending(len(name), len(blob)), name, blob)
    parts.append(_COUNT64.pack(len(state.done)))
    pack_done = _DONE.pack
    for key, done_at in state.done.items():
        name = key.encode()
        parts += (pack_done(len(name), done_at), name)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


class _Reader:
    """Bounds-checked reads over the snapshot body."""

    def __init__(self, data: memoryview) -> None:
        self.view = data
        self.pos = 0

    def take(self, fmt: struct.Struct) -> tuple[int, ...]:
        values = fmt.unpack_from(self.view, self.pos)
        self.pos += fmt.size
        return values

    def bytes(self, length: int) -> bytes:
        end = self.pos + length
        if end > len(self.view):
            raise ValueError("length runs past the end")
        out = self.view[self.pos : end].tobytes()
        self.pos = end
        return out

    def text(self, length: int) -> str:
        end = self.pos + length
        if end > len(self.view):
            raise ValueError("length runs past the end")
        out = str(self.view[self.pos : end], "utf-8")
        self.pos = end
        return out


def decode_snapshot(data: bytes) -> SnapshotState:
    """The state in ``data``; DecodeError (carrying ``data``) if it is not a valid snapshot."""
    if len(data) < _HEADER.size + _CRC.size or data[: len(_MAGIC)] != _MAGIC:
        raise DecodeError("joiner snapshot: not a joiner snapshot (bad magic or too short)", raw=data)
    if data[len(_MAGIC)] != FORMAT_VERSION:
        raise DecodeError(
            f"joiner snapshot: format version {data[len(_MAGIC)]}, this joiner reads {FORMAT_VERSION}",
            raw=data,
        )
    body = memoryview(data)[: -_CRC.size]
    (expected,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(body) != expected:
        raise DecodeError("joiner snapshot: checksum mismatch (corrupt or truncated)", raw=data)
    try:
        return _parse(body)
    except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise DecodeError(f"joiner snapshot: malformed ({exc})", raw=data) from exc


def _parse(body: memoryview) -> SnapshotState:
    reader = _Reader(body)
    _, _, stream_time = reader.take(_HEADER)
    partitions: list[tuple[str, int]] = []
    positions: list[int] = []
    for _ in range(reader.take(_COUNT32)[0]):
        length, partition, position = reader.take(_TP)
        partitions.append((reader.text(length), partition))
        positions.append(position)
    counts: dict[str, int] = {}
    for _ in range(reader.take(_COUNT16)[0]):
        length, value = reader.take(_COUNTER)
        counts[reader.text(length)] = value
    pending: dict[str, bytes] = {}
    (items,) = reader.take(_COUNT64)
    view, pos, previous = reader.view, reader.pos, NO_TIME
    for _ in range(items):  # the bulk of a snapshot: inlined reads
        key_length, blob_length = _PENDING.unpack_from(view, pos)
        start = pos + _PENDING.size
        middle = start + key_length
        pos = middle + blob_length
        if pos > len(view):
            raise ValueError("length runs past the end")
        blob = view[middle:pos].tobytes()
        first_seen = check_item(blob, len(partitions))
        if first_seen < previous:
            raise ValueError("pending items out of first_seen order")
        previous = first_seen
        pending[str(view[start:middle], "utf-8")] = blob
    reader.pos = pos
    if len(pending) != items:
        raise ValueError("a pending event appears twice")
    done: dict[str, int] = {}
    times: dict[int, int] = {}  # one int object per distinct time, as in the live core
    previous = NO_TIME
    (items,) = reader.take(_COUNT64)
    for _ in range(items):
        key_length, done_at = reader.take(_DONE)
        if done_at < previous:
            raise ValueError("done entries out of order")
        previous = done_at
        done[reader.text(key_length)] = times.setdefault(done_at, done_at)
    if reader.pos != len(body):
        raise ValueError(f"{len(body) - reader.pos} trailing bytes")
    if len(done) != items or any(key in done for key in pending):
        raise ValueError("an event appears twice in done, or is both pending and done")
    return SnapshotState(stream_time, partitions, positions, counts, pending, done)
