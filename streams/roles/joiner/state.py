"""The joiner's compact state: one bytes blob per pending event, and the compact prediction.

A pending event is kept as ONE immutable ``bytes`` object (not a dict of decoded
records, not an object graph): a Python object costs 30 to 60 bytes of header each, and
a pending event sits in memory for up to the TTL (days), so the blob layout is what
keeps the joiner near 500 bytes per pending event. Every update unpacks the blob into a
transient :class:`Item`, changes it and packs it again (a few hundred bytes copied).

Blob layout (little-endian; ``ref`` = topic-partition index ``H`` + offset ``q``)::

    first_seen q | features length i (-1: none) | label length i (-1: none)
    [ref + FeatureEvent payload] [ref + LabelEvent payload]
    then per prediction: ref + version q + variant B + body length I + body

Features and labels keep their raw single-object payload (the label's raw bytes go to
the dead letter when it never joins). A prediction keeps only its *compact body*: the
Avro encoding of (version, variant, prediction, scores), which is the slice of the
PredictionEvent body between ``model`` and ``latency``, taken without decoding anything
(:func:`slice_prediction`) when the writer schema is the layout this module knows.
:func:`admit` is the gate in front of all this: it checks each payload's header on
arrival so that a record that could never be joined is dead-lettered at once.

Examples
--------
>>> item = Item(first_seen=5, features=(0, 42, b"f"), label=None, predictions=[])
>>> unpack_item(pack_item(item)) == item
True
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import fastavro

from riverops.schemas.codec import SINGLE_OBJECT_MAGIC, Codec, SingleObjectCodec
from riverops.schemas.contracts import parse_contract
from riverops.schemas.errors import DecodeError, UnknownSchemaError

__all__ = [
    "Kind",
    "VARIANTS",
    "Stored",
    "StoredPrediction",
    "Item",
    "pack_item",
    "unpack_item",
    "first_seen_of",
    "refs_of",
    "check_item",
    "prediction_layout_fingerprint",
    "slice_prediction",
    "compact_prediction",
    "decode_compact",
    "read_long",
    "admit",
]

Kind = Literal["features", "prediction", "label"]
"""What a consumed record is, from the topic it was read from."""

VARIANTS = ("champion", "challenger", "shadow", "online")
_VARIANT_INDEX = {name: index for index, name in enumerate(VARIANTS)}

Stored = tuple[int, int, bytes]
"""A stored record: (topic-partition index, offset, payload)."""
StoredPrediction = tuple[int, int, int, int, bytes]
"""A stored prediction: (topic-partition index, offset, version, variant index, compact body)."""

_HEAD = struct.Struct("<qii")
_FIRST = struct.Struct("<q")
_REF = struct.Struct("<Hq")
_PRED = struct.Struct("<HqqBI")

# The PredictionEvent layout slice_prediction walks (docs do not change a fingerprint).
_PREDICTION_LAYOUT: dict[str, Any] = {
    "type": "record", "name": "PredictionEvent", "namespace": "riverops.v1",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "model", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "variant", "type": {"type": "enum", "name": "Variant", "symbols": list(VARIANTS)}},
        {"name": "prediction", "type": ["null", "boolean", "double", "string"]},
        {"name": "scores", "type": {"type": "map", "values": "double"}},
        {"name": "latency", "type": "double"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "predicted_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "explanation", "default": None, "type": ["null", {
            "type": "record", "name": "Explanation", "fields": [
                {"name": "intercept", "type": "double"},
                {"name": "contributions", "type": {"type": "array", "items": {
                    "type": "record", "name": "Contribution", "fields": [
                        {"name": "feature", "type": "string"}, {"name": "value", "type": "double"}]}}},
                {"name": "rest", "type": "double"},
            ]}]},
    ],
}
# Version 1 (schemas/avro/previous/PredictionEvent.1.avsc) ends at predicted_at.
_PREDICTION_LAYOUT_V1: dict[str, Any] = {**_PREDICTION_LAYOUT, "fields": _PREDICTION_LAYOUT["fields"][:-1]}
# The compact body: the four PredictionEvent fields a FeedbackEvent keeps, same encodings.
_COMPACT: dict[str, Any] = {
    "type": "record", "name": "StoredPrediction", "namespace": "riverops.joiner",
    "fields": [
        {"name": "version", "type": "long"},
        {"name": "variant", "type": {"type": "enum", "name": "Variant", "symbols": list(VARIANTS)}},
        {"name": "prediction", "type": ["null", "boolean", "double", "string"]},
        {"name": "scores", "type": {"type": "map", "values": "double"}},
    ],
}


@dataclass(slots=True)
class Item:
    """A pending event, unpacked for one update (never kept in this form)."""

    first_seen: int
    features: Stored | None = None
    label: Stored | None = None
    predictions: list[StoredPrediction] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Features, label and at least one prediction: ready to emit."""
        return self.features is not None and self.label is not None and bool(self.predictions)

    def merge(self, kind: Kind, stored: Stored, sliced: tuple[int, int, bytes] | None) -> bool:
        """Put a record in; False if the item already has it (a duplicate). Predictions
        are the same when their (version, variant) are: a re-scored event differs in bytes."""
        if kind == "features":
            if self.features is not None:
                return False
            self.features = stored
        elif kind == "label":
            if self.label is not None:
                return False
            self.label = stored
        else:
            assert sliced is not None
            version, variant, body = sliced
            if any(p[2] == version and p[3] == variant for p in self.predictions):
                return False
            self.predictions.append((stored[0], stored[1], version, variant, body))
        return True


def pack_item(item: Item) -> bytes:
    """The blob of ``item``."""
    features, label = item.features, item.label
    parts = [
        _HEAD.pack(
            item.first_seen,
            -1 if features is None else len(features[2]),
            -1 if label is None else len(label[2]),
        )
    ]
    for stored in (features, label):
        if stored is not None:
            parts += (_REF.pack(stored[0], stored[1]), stored[2])
    for tp, offset, version, variant, body in item.predictions:
        parts += (_PRED.pack(tp, offset, version, variant, len(body)), body)
    return b"".join(parts)


def unpack_item(blob: bytes) -> Item:
    """The item a blob holds; ValueError if the blob is not a well-formed item."""
    first_seen, features_len, label_len = _HEAD.unpack_from(blob)
    pos = _HEAD.size
    stored: list[Stored | None] = []
    for length in (features_len, label_len):
        if length < 0:
            stored.append(None)
            continue
        tp, offset = _REF.unpack_from(blob, pos)
        start = pos + _REF.size
        pos = start + length
        if pos > len(blob):
            raise ValueError("truncated item")
        stored.append((tp, offset, blob[start:pos]))
    predictions: list[StoredPrediction] = []
    while pos < len(blob):
        tp, offset, version, variant, length = _PRED.unpack_from(blob, pos)
        start = pos + _PRED.size
        pos = start + length
        if pos > len(blob) or variant >= len(VARIANTS):
            raise ValueError("truncated item or unknown variant")
        predictions.append((tp, offset, version, variant, blob[start:pos]))
    return Item(first_seen, stored[0], stored[1], predictions)


def first_seen_of(blob: bytes) -> int:
    """The first_seen time of a blob, without unpacking the rest."""
    value: int = _FIRST.unpack_from(blob)[0]
    return value


def refs_of(blob: bytes) -> list[tuple[int, int]]:
    """The (topic-partition index, offset) of every record a blob holds, payloads untouched."""
    _, features_len, label_len = _HEAD.unpack_from(blob)
    pos, refs = _HEAD.size, []
    for length in (features_len, label_len):
        if length >= 0:
            refs.append(_REF.unpack_from(blob, pos))
            pos += _REF.size + length
    while pos < len(blob):
        tp, offset, _, _, length = _PRED.unpack_from(blob, pos)
        refs.append((tp, offset))
        pos += _PRED.size + length
    return refs


def check_item(blob: bytes, partitions: int) -> int:
    """The first_seen of a well-formed blob whose records name topic-partition indexes
    below ``partitions``; ValueError or struct.error for anything else (snapshot loading)."""
    first_seen, features_len, label_len = _HEAD.unpack_from(blob)
    pos = _HEAD.size
    for length in (features_len, label_len):
        if length >= 0:
            if _REF.unpack_from(blob, pos)[0] >= partitions:
                raise ValueError("unknown topic-partition index")
            pos += _REF.size + length
    while pos < len(blob):
        tp, _, _, variant, length = _PRED.unpack_from(blob, pos)
        if tp >= partitions or variant >= len(VARIANTS):
            raise ValueError("unknown topic-partition or variant index")
        pos += _PRED.size + length
    if pos != len(blob):
        raise ValueError(f"item ends at {pos}, blob has {len(blob)} bytes")
    return int(first_seen)


@functools.cache
def prediction_layout_fingerprint(*, version: int = 2) -> bytes:
    """The single-object fingerprint of a PredictionEvent layout slice_prediction walks."""
    return parse_contract(_PREDICTION_LAYOUT if version == 2 else _PREDICTION_LAYOUT_V1).fingerprint


@functools.cache
def _compact_schema() -> Any:
    return fastavro.parse_schema(_COMPACT, named_schemas={})


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """An Avro (zigzag varint) long at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _string_end(buf: bytes, pos: int, *, text: bool = False) -> int:
    length, start = read_long(buf, pos)
    end = start + length
    if length < 0 or end > len(buf):
        raise ValueError("string length out of bounds")
    if text:
        buf[start:end].decode("utf-8")  # what lands in the compact body must decode later
    return end


def slice_prediction(payload: bytes, *, explained: bool = True) -> tuple[int, int, bytes]:
    """(version, variant index, compact body) of a single-object PredictionEvent payload
    written with the known layout (``explained``: version 2, with the explanation field),
    checked to the last byte but never decoded to objects.

    >>> from riverops.schemas.codec import SingleObjectCodec
    >>> payload = SingleObjectCodec().encode("PredictionEvent", {"event_id": "e1",
    ...     "model": "m", "version": 3, "variant": "shadow", "prediction": 1.5, "scores": {},
    ...     "latency": 0.0, "event_time": 0, "predicted_at": 0})
    >>> version, variant, body = slice_prediction(payload)
    >>> (version, VARIANTS[variant]), decode_compact(body)["prediction"]
    ((3, 'shadow'), 1.5)
    """
    try:
        pos = _string_end(payload, _string_end(payload, 10))  # skip event_id and model
        start = pos
        version, pos = read_long(payload, pos)
        variant, pos = read_long(payload, pos)
        if not 0 <= variant < len(VARIANTS):
            raise ValueError(f"variant index {variant}")
        branch, pos = read_long(payload, pos)
        if branch == 1:
            if payload[pos] > 1:
                raise ValueError("boolean byte is not 0 or 1")
            pos += 1
        elif branch == 2:
            pos += 8
        elif branch == 3:
            pos = _string_end(payload, pos, text=True)
        elif branch != 0:
            raise ValueError(f"union branch {branch}")
        pos = _skip_named_doubles(payload, pos)  # the scores map
        end = pos
        _, pos = read_long(payload, pos + 8)  # latency, event_time
        _, pos = read_long(payload, pos)  # predicted_at
        if explained:
            pos = _skip_explanation(payload, pos)
    except (IndexError, ValueError) as exc:
        raise DecodeError(f"PredictionEvent: corrupt Avro body ({exc})", raw=payload) from exc
    if pos != len(payload):
        raise DecodeError(
            f"PredictionEvent: body ends at {pos}, payload has {len(payload)} bytes", raw=payload
        )
    return version, variant, payload[start:end]


def _skip_explanation(payload: bytes, pos: int) -> int:
    """The position after the explanation union (null, or intercept, contributions, rest)."""
    branch, pos = read_long(payload, pos)
    if branch == 0:
        return pos
    if branch != 1:
        raise ValueError(f"explanation union branch {branch}")
    pos = _skip_named_doubles(payload, pos + 8)  # intercept, then the contributions array
    return pos + 8  # rest


def _skip_named_doubles(payload: bytes, pos: int) -> int:
    """The position after a map of doubles or an array of (string, double) records: both
    are blocks of (count, [byte size,] entries of a string and 8 bytes) up to count 0."""
    while True:
        count, pos = read_long(payload, pos)
        if count == 0:
            return pos
        if count < 0:
            count = -count
            _, pos = read_long(payload, pos)
        for _ in range(count):
            pos = _string_end(payload, pos, text=True) + 8


def compact_prediction(record: dict[str, Any]) -> tuple[int, int, bytes]:
    """(version, variant index, compact body) of a decoded PredictionEvent (any writer)."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, _compact_schema(), record)
    return int(record["version"]), _VARIANT_INDEX[record["variant"]], buffer.getvalue()


def decode_compact(body: bytes) -> dict[str, Any]:
    """The MadePrediction record (version, variant, prediction, scores) of a compact body."""
    record = fastavro.schemaless_reader(io.BytesIO(body), _compact_schema(), None)
    assert isinstance(record, dict)
    return record


def admit(schema: str, payload: bytes | None, codec: Codec) -> tuple[int, int, bytes] | None:
    """Check a consumed payload of ``schema`` before it is stored: not empty and, with a
    SingleObjectCodec, headed by a known writer of that schema. A PredictionEvent comes back
    as (version, variant index, compact body). DecodeError if the payload does not fit."""
    if not payload:
        raise DecodeError(f"{schema}: empty payload (tombstone)", raw=b"")
    if isinstance(codec, SingleObjectCodec):  # the header names the writer schema
        if len(payload) < 10 or payload[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(f"{schema}: not an Avro single-object payload", raw=payload)
        fingerprint = payload[2:10]
        writer = codec.store.writer(fingerprint)
        if writer is None:
            raise UnknownSchemaError(
                f"{schema}: unknown writer schema fingerprint {fingerprint.hex()}", raw=payload
            )
        if writer.name != schema:
            raise DecodeError(f"{schema}: payload is a {writer.name}", raw=payload)
        if schema == "PredictionEvent" and fingerprint == prediction_layout_fingerprint():
            return slice_prediction(payload)
        if schema == "PredictionEvent" and fingerprint == prediction_layout_fingerprint(version=1):
            return slice_prediction(payload, explained=False)
    if schema == "PredictionEvent":  # another writer or wire format: decode, then compact
        return compact_prediction(codec.decode(schema, payload))
    return None
