"""A corpus of bad records mixed into good ones, with what each must become.

Every bad record belongs to one named category; its key starts with ``bad-<category>-``
(or, for a bad label of a good event, is that event's id, listed in ``category_of``), so a
dead letter can be traced back to its category. :data:`EXPECTED` says, per category, which
processors must dead-letter it, with which error class and a reason pattern. The good
events (a few re-sent: duplicated event ids) say how many predictions, feedback records
and monitor samples must come out. ``build`` checks on the way that every record meant to
be undecodable really is (with the same codec as the workers), so a category cannot
silently become good.

Duplicated event ids are exact re-sends (a producer retry, a service sending twice): the
scorer scores each copy (it is stateless), the joiner emits the event's feedback once and
counts every extra copy (features, label and the re-scored prediction) as a duplicate or
a late prediction, the monitor counts the event once. They are not dead-lettered.
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fastavro
from river.datasets import synth

from riverops.schemas.codec import SINGLE_OBJECT_MAGIC, SingleObjectCodec
from riverops.schemas.errors import DecodeError

T0_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
STEP_MS = 10
TICK_MS = T0_MS + 2 * 3600 * 1000  # after the corpus by more than the test's TTL (1 h)
MODEL = "fraud"

# category -> how many, topic role, ((processor, error class, reason regex), ...)
EXPECTED: dict[str, tuple[int, str, tuple[tuple[str, str, str], ...]]] = {
    "f_random_bytes": (1500, "features", (
        ("scorer", "DecodeError", "not an Avro single-object payload"),
        ("joiner", "DecodeError", "not an Avro single-object payload"))),
    "f_truncated": (1500, "features", (
        ("scorer", "DecodeError", "corrupt or truncated Avro body"),)),
    "f_unknown_fingerprint": (1000, "features", (
        ("scorer", "UnknownSchemaError", "unknown writer schema fingerprint"),
        ("joiner", "UnknownSchemaError", "unknown writer schema fingerprint"))),
    "f_missing_field": (800, "features", (
        ("scorer", "DecodeError", "corrupt or truncated Avro body"),)),
    "f_extra_field": (800, "features", (("scorer", "DecodeError", "trailing bytes"),)),
    "f_wrong_type": (800, "features", (
        ("scorer", "DecodeError", "corrupt or truncated Avro body"),)),
    "f_nan": (600, "features", (("scorer", "InvalidEventError", "is nan, not a finite number"),)),
    "f_infinity": (600, "features", (("scorer", "InvalidEventError", "is -?inf, not a finite"),)),
    "f_long_string": (300, "features", (("scorer", "InvalidEventError", "is a string of 5000"),)),
    "f_oversized": (10, "features", (
        ("scorer", "InvalidEventError", r"record of \d+ bytes, over the 262144-byte limit"),
        ("joiner", "InvalidEventError", r"record of \d+ bytes, over the 262144-byte limit"))),
    "f_huge_random": (5, "features", (
        # size limits are checked before decoding: a megabyte of noise is never parsed
        ("scorer", "InvalidEventError", r"record of 999900 bytes.*\[value cut to 524288 of 999900 bytes\]"),
        ("joiner", "InvalidEventError", r"record of 999900 bytes.*\[value cut to 524288"))),
    "f_long_id": (50, "features", (
        ("scorer", "InvalidEventError", r"key of \d+ bytes, over the 1024-byte limit"),
        ("joiner", "InvalidEventError", r"key of \d+ bytes.*\[key cut to 1024"))),
    "f_unknown_model": (800, "features", (("scorer", "InvalidEventError", "unknown model 'nope'"),)),
    "l_random_bytes": (800, "labels", (("joiner", "DecodeError", "not an Avro single-object"),)),
    "l_unknown_event": (1000, "labels", (
        ("joiner", "InvalidEventError", "label without features and prediction within TTL"),)),
    "l_truncated": (300, "labels", (
        ("joiner", "InvalidEventError", "label without features and prediction within TTL"),)),
    "l_wrong_model": (200, "labels", (
        ("joiner", "InvalidEventError", "label of .* for model 'other' does not match"),)),
    "l_wrong_type": (200, "labels", (("monitor", "InvalidEventError", "not a binary class: 'maybe'"),)),
    "l_nan": (200, "labels", (("monitor", "InvalidEventError", "not a binary class: nan"),)),
    "p_random_bytes": (300, "predictions", (("joiner", "DecodeError", "not an Avro single-object"),)),
    "fb_random_bytes": (300, "feedback", (("monitor", "DecodeError", "not an Avro single-object"),)),
}
# bad labels attached to good events (their features are good and get scored)
LABEL_ON_GOOD = ("l_wrong_model", "l_wrong_type", "l_nan")
# bad features whose Avro header is valid: the joiner stores them, no prediction comes,
# they expire unlabelled after the TTL (the scorer's dead letter is their trace)
HEADER_VALID = ("f_truncated", "f_missing_field", "f_extra_field", "f_wrong_type", "f_nan",
                "f_infinity", "f_long_string", "f_unknown_model")


@dataclass(frozen=True)
class Record:
    role: str  # topic role
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] | None = None


@dataclass
class Corpus:
    records: list[Record]
    good_copies: Counter[str]  # event_id -> feature records sent (duplicates included)
    labelled: set[str]  # good events with a good label: feedback and a monitor sample each
    joined: set[str]  # every event whose feedback must come out
    unlabelled: int  # good events without a label
    duplicate_features: int
    duplicate_labels: int
    category_of: dict[str, str] = field(default_factory=dict)  # good event id -> bad label category
    sent: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (role, key) -> value

    @property
    def bad(self) -> Counter[str]:
        return Counter({name: spec[0] for name, spec in EXPECTED.items()})

    def expected_dead_letters(self) -> Counter[tuple[str, str, str]]:
        """(category, processor, error class) -> how many dead letters."""
        out: Counter[tuple[str, str, str]] = Counter()
        for name, (count, _role, letters) in EXPECTED.items():
            for processor, error, _reason in letters:
                out[(name, processor, error)] += count
        return out

    def category(self, key: str) -> str:
        if key.startswith("bad-"):
            return key.split("-")[1]
        return self.category_of.get(key, "good")


def _body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema, named_schemas={}), record)
    return buffer.getvalue()


class _Maker:
    """Builds the payload of each category (checked undecodable where it must be)."""

    def __init__(self, codec: SingleObjectCodec, rng: random.Random) -> None:
        self.codec, self.rng = codec, rng
        self.header = codec.encode("FeatureEvent", _features("x", 0, {}))[:10]
        self.base = json.loads(json.dumps(codec.store.reader("FeatureEvent").parsed))

    def random_bytes(self, size: int) -> bytes:
        data = bytearray(self.rng.randbytes(size))
        if data[:2] == SINGLE_OBJECT_MAGIC:
            data[0] = 0
        return bytes(data)

    def undecodable(self, schema: str, payload: bytes) -> bytes:
        try:
            self.codec.decode(schema, payload)
        except DecodeError:
            return payload
        raise AssertionError(f"a payload meant to be bad decodes as a {schema}")

    def variant(self, change: str, record: dict[str, Any]) -> bytes:
        schema = copy.deepcopy(self.base)
        if change == "missing":
            schema["fields"] = [f for f in schema["fields"] if f["name"] != "entity_id"]
            record = {k: v for k, v in record.items() if k != "entity_id"}
        elif change == "extra":
            schema["fields"].append({"name": "extra", "type": "string"})
            record = {**record, "extra": "surprise"}
        else:  # wrong type: event_time as a string
            schema["fields"][3]["type"] = "string"
            record = {**record, "event_time": "2026-11-01T00:00:00Z"}
        return self.undecodable("FeatureEvent", self.header + _body(schema, record))

    def truncated(self, schema: str, payload: bytes) -> bytes:
        while True:
            cut = payload[: self.rng.randrange(11, len(payload))]
            try:
                self.codec.decode(schema, cut)
            except DecodeError:
                return cut


def _features(event_id: str, ms: int, values: dict[str, Any], model: str = MODEL) -> dict[str, Any]:
    return {"event_id": event_id, "model": model, "entity_id": f"c{zlib.crc32(event_id.encode()) % 50}",
            "event_time": ms, "features": values}


def _label(event_id: str, ms: int, label: Any, model: str = MODEL) -> dict[str, Any]:
    return {"event_id": event_id, "model": model, "label": label, "label_time": ms}


def build(n_good: int = 20_000, *, seed: int = 7) -> Corpus:
    """The corpus: ``n_good`` good events (90% labelled, 5% of their features and 5% of
    their labels sent twice) and every category of :data:`EXPECTED`, in time order."""
    rng = random.Random(seed)
    codec = SingleObjectCodec()
    make = _Maker(codec, rng)
    rows = [dict(x) for x, _ in synth.Agrawal(classification_function=0, seed=seed).take(n_good)]
    placed: list[tuple[float, int, Record]] = []  # (position, tie-break, record)

    def put(position: float, role: str, key: str | bytes | None, value: bytes,
            headers: tuple[tuple[str, bytes], ...] | None = None) -> None:
        raw_key = key.encode() if isinstance(key, str) else key
        ms = T0_MS + int(position * STEP_MS)
        placed.append((position, len(placed), Record(role, raw_key, value, ms, headers)))

    good_copies: Counter[str] = Counter()
    labelled: set[str] = set()
    category_of: dict[str, str] = {}
    bad_label_left = {name: EXPECTED[name][0] for name in LABEL_ON_GOOD}
    unlabelled = dup_features = dup_labels = 0
    for i, row in enumerate(rows):
        eid = f"g{i}"
        ms = T0_MS + i * STEP_MS
        payload = codec.encode("FeatureEvent", _features(eid, ms, row))
        put(i, "features", eid, payload)
        good_copies[eid] += 1
        label_at = i + rng.uniform(1, 100)
        label_ms = T0_MS + int(label_at * STEP_MS)
        draw = rng.random()
        pending_bad = [name for name, left in bad_label_left.items() if left]
        if draw < 0.1:
            unlabelled += 1
        elif (draw < 0.2 or i < 20) and pending_bad:
            # the first labels are of the wrong type: the monitor must not infer the task from them
            name = "l_wrong_type" if i < 20 else rng.choice(pending_bad)
            bad_label_left[name] -= 1
            category_of[eid] = name
            label = {"l_wrong_model": _label(eid, label_ms, True, model="other"),
                     "l_wrong_type": _label(eid, label_ms, "maybe"),
                     "l_nan": _label(eid, label_ms, math.nan)}[name]
            put(label_at, "labels", eid, codec.encode("LabelEvent", label))
        else:
            label_payload = codec.encode("LabelEvent", _label(eid, label_ms, bool(i % 3 == 0)))
            put(label_at, "labels", eid, label_payload)
            labelled.add(eid)
            if rng.random() < 0.05:
                put(label_at + rng.uniform(1, 200), "labels", eid, label_payload)
                dup_labels += 1
            if rng.random() < 0.05:
                put(i + rng.uniform(1, 200), "features", eid, payload)
                good_copies[eid] += 1
                dup_features += 1
    assert not any(bad_label_left.values()), "too few good events for the bad labels"

    sample = rows[0]
    for name, (count, role, _letters) in EXPECTED.items():
        if name in LABEL_ON_GOOD:
            continue
        for j in range(count):
            key = f"bad-{name}-{j:05d}"
            position = rng.uniform(0, n_good * 0.9)
            ms = T0_MS + int(position * STEP_MS)
            good = _features(key, ms, dict(sample))
            value: bytes
            if name in ("f_random_bytes", "l_random_bytes", "p_random_bytes", "fb_random_bytes"):
                value = make.random_bytes(rng.randrange(1, 300))
            elif name == "f_truncated":
                value = make.truncated("FeatureEvent", codec.encode("FeatureEvent", good))
            elif name == "f_unknown_fingerprint":
                body = codec.encode("FeatureEvent", good)[10:]
                value = make.undecodable("FeatureEvent", SINGLE_OBJECT_MAGIC + rng.randbytes(8) + body)
            elif name in ("f_missing_field", "f_extra_field", "f_wrong_type"):
                value = make.variant(name.split("_")[1], good)
            elif name == "f_nan":
                value = codec.encode("FeatureEvent", _features(key, ms, {**sample, "salary": math.nan}))
            elif name == "f_infinity":
                inf = math.inf if j % 2 else -math.inf
                value = codec.encode("FeatureEvent", _features(key, ms, {**sample, "loan": inf}))
            elif name == "f_long_string":
                value = codec.encode("FeatureEvent", _features(key, ms, {**sample, "note": "x" * 5000}))
            elif name == "f_oversized":  # valid, each string under the 4096-char limit
                wide = {f"s{k}": "y" * 2000 for k in range(150)}
                value = codec.encode("FeatureEvent", _features(key, ms, wide))
            elif name == "f_huge_random":
                value = make.random_bytes(999_900)
            elif name == "f_long_id":
                key = f"{key}-{'x' * 2000}"
                value = codec.encode("FeatureEvent", _features(key, ms, dict(sample)))
            elif name == "f_unknown_model":
                value = codec.encode("FeatureEvent", _features(key, ms, dict(sample), model="nope"))
            elif name == "l_unknown_event":
                value = codec.encode("LabelEvent", _label(key, ms, True))
            elif name == "l_truncated":
                value = make.truncated("LabelEvent", codec.encode("LabelEvent", _label(key, ms, True)))
            else:
                raise AssertionError(name)
            put(position, role, key, value)

    placed.sort(key=lambda item: (item[0], item[1]))
    records = [record for _, _, record in placed]
    sent = {(r.role, (r.key or b"").decode()): r.value for r in records if r.key is not None}
    joined = labelled | {eid for eid, name in category_of.items() if name != "l_wrong_model"}
    return Corpus(records, good_copies, labelled, joined, unlabelled, dup_features, dup_labels,
                  category_of, sent)


def ticks(count: int = 8) -> tuple[list[Record], list[str]]:
    """Good labelled events far later than the corpus: they move every partition's
    stream time past the TTL, so the joiner expires what never joined."""
    codec = SingleObjectCodec()
    rows = [dict(x) for x, _ in synth.Agrawal(classification_function=0, seed=99).take(count)]
    records, ids = [], []
    for k, row in enumerate(rows):
        eid = f"tick{k}"
        ms = TICK_MS + k
        records.append(Record("features", eid.encode(), codec.encode("FeatureEvent", _features(eid, ms, row)), ms))
        records.append(Record("labels", eid.encode(), codec.encode("LabelEvent", _label(eid, ms + 1, True)), ms + 1))
        ids.append(eid)
    return records, ids


__all__ = ["EXPECTED", "Corpus", "Record", "build", "ticks"]
