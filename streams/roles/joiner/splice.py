"""A complete event's FeedbackEvent payload spliced from its stored bytes, decoding nothing.

The FeedbackEvent body begins with the FeatureEvent body (event_id, model, entity_id,
event_time, features: the same fields, the same encodings), goes on with the LabelEvent
body's tail (label, label_time) and ends with the array of the stored compact predictions
(:mod:`riverops.roles.joiner.state`: each one a MadePrediction's encoding). So when the
features and the label were written with the layouts below and the codec writes
FeedbackEvent with its layout, the feedback is those byte ranges joined under a new
single-object header: no record decoded to Python objects, none encoded again (the decode
and encode were about a third of the joiner's CPU per event). Features written with a
typed feature schema (:mod:`riverops.schemas.features`) are walked by their record's
fields and joined under the header of that schema's typed FeedbackEvent, whose readers
decode it without the map of unions (most of a generic FeedbackEvent's decode).

Every check of :func:`~riverops.roles.joiner.feedback.feedback_record` is made on the
bytes, in its order, with its refusals: a body that does not parse to its last byte
(DecodeError with the raw payload), a features event_id that is not the key, the one
feature rule (:func:`~riverops.schemas.validation.check_feature_map`: a non-finite double,
a string over ``MAX_STRING`` characters, more than ``MAX_FEATURES`` features), a label of
another event or model. Every string is checked to be UTF-8, as a decode would. What the
walk does not know (another writer schema: an older or newer layout, the Confluent wire
format; a map with a repeated key, where a decode keeps the last value) goes back to the
decoding path: :meth:`Splicer.splice` answers None. One deliberate
difference: a negative union index, which is not Avro but which fastavro reads as Python's
negative list index (-1: the last branch), is refused here.

Examples
--------
>>> from riverops.schemas.codec import SingleObjectCodec
>>> from riverops.roles.joiner.state import Item, compact_prediction
>>> codec = SingleObjectCodec()
>>> features = codec.encode("FeatureEvent", {"event_id": "e1", "model": "fraud",
...     "entity_id": "c", "event_time": 5, "features": {"amount": 12.5}})
>>> label = codec.encode("LabelEvent", {"event_id": "e1", "model": "fraud", "label": True,
...     "label_time": 9})
>>> made = compact_prediction({"version": 1, "variant": "champion", "prediction": True,
...     "scores": {"True": 0.9}})
>>> item = Item(0, (0, 0, features), (2, 0, label), [(1, 0, made[0], made[1], made[2])])
>>> model, payload = Splicer.of(codec).splice("e1", item)
>>> record = codec.decode("FeedbackEvent", payload)
>>> model, record["features"], record["label"], record["predictions"][0]["scores"]
('fraud', {'amount': 12.5}, True, {'True': 0.9})
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Any

from riverops.roles.joiner.feedback import Rejected
from riverops.roles.joiner.state import Item, read_long
from riverops.schemas.codec import SINGLE_OBJECT_MAGIC, Codec, SingleObjectCodec
from riverops.schemas.contracts import parse_contract
from riverops.schemas.errors import DecodeError, InvalidEventError
from riverops.schemas.validation import (
    MAX_FEATURES,
    MAX_STRING,
    not_finite,
    string_too_long,
    too_many_features,
)

__all__ = ["Splicer"]

_VALUE = ["null", "boolean", "double", "string"]
_FEATURE_LAYOUT: dict[str, Any] = {
    "type": "record", "name": "FeatureEvent", "namespace": "riverops.v1",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "model", "type": "string"},
        {"name": "entity_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "features", "type": {"type": "map", "values": _VALUE}},
    ],
}
_LABEL_LAYOUT: dict[str, Any] = {
    "type": "record", "name": "LabelEvent", "namespace": "riverops.v1",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "model", "type": "string"},
        {"name": "label", "type": ["boolean", "double", "string"]},
        {"name": "label_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
_FEEDBACK_LAYOUT: dict[str, Any] = {
    "type": "record", "name": "FeedbackEvent", "namespace": "riverops.v1",
    "fields": [
        *_FEATURE_LAYOUT["fields"],
        *_LABEL_LAYOUT["fields"][2:],
        {"name": "predictions", "type": {"type": "array", "items": {
            "type": "record", "name": "MadePrediction", "fields": [
                {"name": "version", "type": "long"},
                {"name": "variant", "type": {"type": "enum", "name": "Variant",
                                             "symbols": ["champion", "challenger", "shadow", "online"]}},
                {"name": "prediction", "type": _VALUE},
                {"name": "scores", "type": {"type": "map", "values": "double"}},
            ]}}},
    ],
}
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")

TypedField = tuple[str, str, bool]
"""A typed feature as the walk reads it: (name, Avro type, nullable)."""


class _Trailing(ValueError):
    """A body that ends before its payload does (the decode's own wording)."""

    def __init__(self, extra: int) -> None:
        super().__init__(f"{extra} trailing bytes after the record")


def _refusal(schema: str, exc: Exception, payload: bytes) -> DecodeError:
    if isinstance(exc, _Trailing):
        return DecodeError(f"{schema}: {exc}", raw=payload)
    return DecodeError(f"{schema}: corrupt or truncated Avro body ({exc})", raw=payload)


@functools.cache
def _fingerprint(layout: str) -> bytes:
    return parse_contract({"features": _FEATURE_LAYOUT, "label": _LABEL_LAYOUT,
                           "feedback": _FEEDBACK_LAYOUT}[layout]).fingerprint


class Splicer:
    """Splices the feedback of the layouts above for one codec: :meth:`of` gives None when
    the codec writes FeedbackEvent otherwise (another wire format, or a FeedbackEvent that
    evolved); then every event takes the decoding path."""

    def __init__(self, header: bytes, typed: dict[bytes, tuple[tuple[TypedField, ...], bytes]]) -> None:
        self._header = header  # the generic FeedbackEvent's single-object header
        self._typed = typed  # typed FeatureEvent header -> (its fields, its FeedbackEvent's header)

    @classmethod
    def of(cls, codec: Codec) -> Splicer | None:
        if not isinstance(codec, SingleObjectCodec):
            return None
        store = codec.store
        if store.reader("FeedbackEvent").fingerprint != _fingerprint("feedback"):
            return None
        typed = {}
        for contract in store.self_read("FeatureEvent"):
            feedback = store.feedback_of(contract.fingerprint)
            if contract.reads_itself and feedback is not None:
                typed[SINGLE_OBJECT_MAGIC + contract.fingerprint] = (
                    _typed_fields(contract.parsed), SINGLE_OBJECT_MAGIC + feedback.fingerprint)
        return cls(SINGLE_OBJECT_MAGIC + _fingerprint("feedback"), typed)

    def splice(self, event_id: str, item: Item) -> tuple[str, bytes] | None:
        """(model, FeedbackEvent payload) of a complete ``item``, spliced; None when a
        stored payload is not of a layout walked here (the caller decodes instead);
        :class:`Rejected`, as :func:`feedback_record` raises it, for an event that cannot
        become feedback."""
        assert item.features is not None and item.label is not None
        features, label = item.features[2], item.label[2]
        if label[2:10] != _fingerprint("label"):
            return None
        if features[2:10] == _fingerprint("features"):
            fields, header = None, self._header
        elif features[:10] in self._typed:
            fields, header = self._typed[features[:10]]
        else:
            return None
        try:
            walked = _walk_features(features) if fields is None else _walk_typed(features, fields)
        except (IndexError, ValueError, struct.error) as exc:
            raise Rejected(item.features, _refusal("FeatureEvent", exc, features)) from exc
        if walked is None:
            return None  # a repeated key: the decode keeps the last value
        (id_start, id_end), (model_start, model_end), body_end, broken = walked
        try:
            label_id, label_model, label_start = _walk_label(label)
        except (IndexError, ValueError, struct.error) as exc:
            raise Rejected(item.label, _refusal("LabelEvent", exc, label)) from exc
        key = event_id.encode("utf-8", "surrogatepass")
        if features[id_start:id_end] != key:
            shown = features[id_start:id_end].decode()
            raise Rejected(item.features, InvalidEventError(f"features event_id {shown!r} is not the key {event_id!r}"))
        if broken is not None:
            raise Rejected(item.features, broken)
        model = features[model_start:model_end]
        if label_id != key or label_model != model:
            why = (f"label of {label_id.decode()!r} for model {label_model.decode()!r} does not match "
                   f"features of {event_id!r} for model {model.decode()!r}")
            raise Rejected(item.label, InvalidEventError(why))
        predictions = sorted(item.predictions, key=lambda p: (p[3], p[2]))  # variant, version
        array = [_zigzag(len(predictions)), *(p[4] for p in predictions), b"\x00"] if predictions else [b"\x00"]
        payload = b"".join([header, features[10:body_end], label[label_start:], *array])
        return model.decode(), payload


def _typed_fields(parsed: Any) -> tuple[TypedField, ...]:
    """The features of a parsed typed FeatureEvent schema, in their order."""
    record = next(f for f in parsed["fields"] if f["name"] == "features")["type"]
    out = []
    for field in record["fields"]:
        kind = field["type"]
        nullable = isinstance(kind, list)
        out.append((field["name"], kind[1] if nullable else kind, nullable))
    return tuple(out)


def _zigzag(n: int) -> bytes:
    """The Avro encoding of a non-negative long."""
    n <<= 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(buf: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the UTF-8 string at ``pos``; ValueError if it is not one."""
    byte = buf[pos]
    if byte & 0x80:
        length, start = read_long(buf, pos)
    else:  # a length under 64: one byte (the common case, inlined)
        length, start = (byte >> 1) ^ -(byte & 1), pos + 1
    end = start + length
    if length < 0 or end > len(buf):
        raise ValueError("string length out of bounds")
    buf[start:end].decode("utf-8")  # UnicodeDecodeError is a ValueError
    return start, end


def _walk_features(payload: bytes) -> tuple[tuple[int, int], tuple[int, int], int, InvalidEventError | None] | None:
    """The event_id and model ranges of a FeatureEvent payload, where its body ends, and
    the first breach of the feature rule (None: none); None for a map with a repeated key."""
    ids, model, pos = _walk_header(payload)
    names: list[bytes] = []
    broken: InvalidEventError | None = None
    while True:
        count, pos = read_long(payload, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            pos = read_long(payload, pos)[1]  # the block's byte size
        for _ in range(count):
            start, pos = _string(payload, pos)
            name = payload[start:pos]
            names.append(name)
            branch = payload[pos]  # a union index is one byte: 0 to 3 encode as 0, 2, 4, 6
            pos += 1
            if branch == 4:
                value = _DOUBLE.unpack_from(payload, pos)[0]
                pos += 8
                if broken is None and not math.isfinite(value):
                    broken = not_finite(name.decode(), value)
            elif branch == 2:
                if pos >= len(payload):
                    raise ValueError("boolean past the end")
                pos += 1
            elif branch == 6:
                text_start, pos = _string(payload, pos)
                if broken is None and pos - text_start > MAX_STRING:  # bytes: a bound on chars
                    broken = _too_long(name.decode(), payload[text_start:pos])
            elif branch != 0:
                raise ValueError(f"union branch byte {branch}")
    if pos < len(payload):
        raise _Trailing(len(payload) - pos)
    if len(set(names)) != len(names):
        return None
    broken = _too_many(len(names)) or broken  # the rule's first check, as check_feature_map makes it
    return ids, model, pos, broken


def _too_long(name: str, text: bytes) -> InvalidEventError | None:
    """The breach of a string feature over ``MAX_STRING`` characters (None: within)."""
    chars = len(text.decode())
    return string_too_long(name, chars) if chars > MAX_STRING else None


def _too_many(count: int) -> InvalidEventError | None:
    return too_many_features(count) if count > MAX_FEATURES else None


def _walk_header(payload: bytes) -> tuple[tuple[int, int], tuple[int, int], int]:
    """The event_id and model ranges of a FeatureEvent payload and where its features start."""
    ids = _string(payload, 10)
    model = _string(payload, ids[1])
    pos = _string(payload, model[1])[1]  # entity_id
    return ids, model, read_long(payload, pos)[1]  # event_time


def _walk_typed(payload: bytes, fields: tuple[TypedField, ...]
                ) -> tuple[tuple[int, int], tuple[int, int], int, InvalidEventError | None]:
    """As :func:`_walk_features`, for features written as a typed record of ``fields``."""
    ids, model, pos = _walk_header(payload)
    broken: InvalidEventError | None = None
    for name, kind, nullable in fields:
        if nullable:
            branch = payload[pos]  # ["null", kind]: 0 encodes as 0, 1 as 2
            pos += 1
            if branch == 0:
                continue
            if branch != 2:
                raise ValueError(f"union branch byte {branch}")
        if kind == "double" or kind == "float":
            layout = _DOUBLE if kind == "double" else _FLOAT
            value = layout.unpack_from(payload, pos)[0]
            pos += layout.size
            if broken is None and not math.isfinite(value):
                broken = not_finite(name, value)
        elif kind == "long" or kind == "int":
            pos = read_long(payload, pos)[1]
        elif kind == "boolean":
            if pos >= len(payload):
                raise ValueError("boolean past the end")
            pos += 1
        else:  # string: the only other typed feature (check_feature_schema)
            text_start, pos = _string(payload, pos)
            if broken is None and pos - text_start > MAX_STRING:  # bytes: a bound on chars
                broken = _too_long(name, payload[text_start:pos])
    if pos < len(payload):
        raise _Trailing(len(payload) - pos)
    broken = _too_many(len(fields)) or broken  # the rule's first check, as check_feature_map makes it
    return ids, model, pos, broken


def _walk_label(payload: bytes) -> tuple[bytes, bytes, int]:
    """The event_id and model of a LabelEvent payload and where its label starts."""
    ids = _string(payload, 10)
    model = _string(payload, ids[1])
    label_start = model[1]
    branch, pos = read_long(payload, label_start)
    if branch == 0:
        if pos >= len(payload):
            raise ValueError("boolean past the end")
        pos += 1
    elif branch == 1:
        _DOUBLE.unpack_from(payload, pos)
        pos += 8
    elif branch == 2:
        pos = _string(payload, pos)[1]
    else:
        raise ValueError(f"label union branch {branch}")
    pos = read_long(payload, pos)[1]  # label_time
    if pos < len(payload):
        raise _Trailing(len(payload) - pos)
    return payload[ids[0]:ids[1]], payload[model[0]:model[1]], label_start
