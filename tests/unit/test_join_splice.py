"""The spliced feedback (riverops.roles.joiner.splice) is byte for byte what encoding the
decoded feedback gives, and refuses what the decoding path refuses, the same way: on a
random stream, on every refusal of the feature rule and of mismatched parts, on corrupt
bodies; layouts it does not walk (typed features, a map with a repeated key, the
Confluent wire format) go down the decoding path."""

from __future__ import annotations

import io
import json
import math
import random
from importlib import resources
from typing import Any

import fastavro
import pytest

from riverops.roles.joiner import JoinCore, JoinInput
from riverops.roles.joiner.splice import feedback_header, splice_feedback
from riverops.roles.joiner.state import Item, compact_prediction
from riverops.schemas.codec import SINGLE_OBJECT_MAGIC, SingleObjectCodec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.features import feature_schema

from .test_joiner import CODEC, Feed, batches_of, label_of, make_stream, prediction_of, refusals


def _both(records: list[list[JoinInput]], codec: SingleObjectCodec = CODEC) -> tuple[Any, Any]:
    """(decoded feedback, refusals) of a dict core and of an encoded core over ``records``."""
    plain, encoded = JoinCore(ttl_ms=10_000, codec=codec), JoinCore(ttl_ms=10_000, codec=codec, encoded=True)
    out: list[tuple[list[Any], list[Any]]] = [([], []), ([], [])]
    for batch in records:
        for core, (feedback, dead) in zip((plain, encoded), out, strict=True):
            core.add_many(batch)
            result = core.flush()
            feedback += result.feedback or result.encoded
            dead += refusals(result)
    (dicts, dead_plain), (payloads, dead_encoded) = out
    assert [model for model, _ in payloads] == [record["model"] for record in dicts]
    assert [payload for _, payload in payloads] == [codec.encode("FeedbackEvent", r) for r in dicts]
    # a body that does not parse: the same record refused as a DecodeError (the wording of
    # fastavro's reason and of the walk's differ)
    assert [_comparable(d) for d in dead_encoded] == [_comparable(d) for d in dead_plain]
    return dicts, dead_plain


def _comparable(refusal: tuple[Any, str, str]) -> tuple[Any, str, str]:
    origin, kind, why = refusal
    return (origin, kind, why.split(" (")[0]) if kind == "DecodeError" else refusal


@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_stream_gives_the_same_bytes(seed: int) -> None:
    records = make_stream(seed, events=1_500)
    feedback, _ = _both(batches_of(records, random.Random(seed)))
    assert len(feedback) > 1_000
    assert any(len(r["predictions"]) > 1 for r in feedback)  # sorted by variant, version in both


def _features(event_id: str, values: dict[str, Any], *, model: str = "fraud") -> bytes:
    return CODEC.encode("FeatureEvent", {"event_id": event_id, "model": model, "entity_id": "card-7",
                                         "event_time": 1_000, "features": values})


def _event(feed: Feed, event_id: str, features: bytes, label: bytes | None = None) -> list[JoinInput]:
    return [feed("features", event_id, features, 1_000), feed("prediction", event_id, prediction_of(event_id), 1_002),
            feed("label", event_id, label if label is not None else label_of(event_id), 5_000)]


def test_every_refusal_is_the_same() -> None:
    feed = Feed()
    events = [
        _event(feed, "ok", _features("ok", {"a": 1.5, "b": True, "c": "é" * 4_096, "d": None, "é": "ü"})),
        _event(feed, "nan", _features("nan", {"a": 1.0, "b": math.nan})),
        _event(feed, "inf", _features("inf", {"a": -math.inf})),
        _event(feed, "long", _features("long", {"s": "é" * (4_096 // 2 + 1) * 2})),
        _event(feed, "many", _features("many", {f"f{i}": 0.0 for i in range(10_001)})),
        _event(feed, "other-id", _features("someone-else", {"a": 1.0})),
        _event(feed, "other-model", _features("other-model", {"a": 1.0}),
               label_of("other-model", model="pricing")),
        _event(feed, "label-string", _features("label-string", {"a": 1.0}),
               label_of("label-string", label="chargeback")),
        _event(feed, "label-double", _features("label-double", {"a": 1.0}),
               label_of("label-double", label=2.5)),
    ]
    feedback, dead = _both([batch for batch in events])
    assert [r["event_id"] for r in feedback] == ["ok", "label-string", "label-double"]
    reasons = [why for _, _, why in dead]
    assert any("'b' is nan" in why for why in reasons) and any("is -inf" in why for why in reasons)
    assert any("string of 4098 chars" in why for why in reasons)
    assert any("10001 features" in why for why in reasons)
    assert any("is not the key 'other-id'" in why for why in reasons)
    assert any("for model 'pricing' does not match" in why for why in reasons)


def test_corrupt_bodies_are_refused_as_the_decode_refuses_them() -> None:
    """Bodies that pass the arrival check (a known writer) but do not parse: cut short, a
    byte too many, a bad union branch, invalid UTF-8, a length past the end."""
    good, label = _features("e", {"a": 1.0, "s": "text"}), label_of("e")
    corrupt = {
        "cut": good[:-2], "trailing": good + b"\x00", "branch": good.replace(b"\x02a\x04", b"\x02a\x0c"),
        "utf8": good.replace(b"text", b"t\xffxt"), "length": good.replace(b"\x0ccard-7", b"\x7ecard-7"),
        "label-cut": label[:-1],
    }
    batches, feed = [], Feed()
    for name, payload in corrupt.items():
        event_id = f"c-{name}"
        if name.startswith("label"):
            batches.append(_event(feed, event_id, _features(event_id, {"a": 1.0}), _relabel(payload, event_id)))
        else:
            batches.append(_event(feed, event_id, _rekey(payload, event_id)))
    feedback, dead = _both(batches)
    assert feedback == [] and sorted(o.key_.decode() for o, _, _ in dead) == sorted(f"c-{n}" for n in corrupt), dead
    assert all(kind == "DecodeError" for _, kind, _ in dead), dead


def _rekey(payload: bytes, event_id: str) -> bytes:
    """``payload`` (a FeatureEvent of event "e") for ``event_id``: its id string replaced."""
    return payload[:10] + _avro_string(event_id) + payload[12:]


def _relabel(payload: bytes, event_id: str) -> bytes:
    return payload[:10] + _avro_string(event_id) + payload[12:]


def _avro_string(text: str) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, {"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]},
                               {"s": text})
    return buffer.getvalue()


def test_layouts_it_does_not_walk_take_the_decoding_path() -> None:
    made = compact_prediction({"version": 1, "variant": "champion", "prediction": True, "scores": {}})
    prediction = (1, 0, made[0], made[1], made[2])
    header = feedback_header(CODEC)
    assert header == SINGLE_OBJECT_MAGIC + CODEC.store.reader("FeedbackEvent").fingerprint
    # a map with a repeated key (a decode keeps the last value): written by hand
    body = _features("e", {"a": 1.0, "b": 2.0})
    repeated = body.replace(b"\x02b", b"\x02a")
    assert splice_feedback("e", Item(0, (0, 0, repeated), (2, 0, label_of("e")), [prediction]), header) is None
    # typed features: another writer schema
    typed = SingleObjectCodec(SchemaStore.bundled().with_features("fraud", feature_schema("fraud", {"a": "double"})))
    payload = typed.encode("FeatureEvent", {"event_id": "e", "model": "fraud", "entity_id": "c",
                                            "event_time": 1, "features": {"a": 1.0}})
    assert splice_feedback("e", Item(0, (0, 0, payload), (2, 0, label_of("e")), [prediction]), header) is None
    feed = Feed()
    feedback, _ = _both([[feed("features", "t", payload.replace(b"\x02e", b"\x02t"), 1_000),
                          feed("prediction", "t", prediction_of("t"), 1_002),
                          feed("label", "t", label_of("t"), 5_000)]], codec=typed)
    assert [r["features"] for r in feedback] == [{"a": 1.0}]
    # a FeedbackEvent that evolved: no header, every event decoded and encoded
    evolved = json.loads(resources.files("riverops.schemas").joinpath("avro/FeedbackEvent.avsc").read_text("utf-8"))
    evolved["fields"].append({"name": "region", "type": "string", "default": "eu"})
    assert feedback_header(SingleObjectCodec(SchemaStore.bundled().with_reader(evolved))) is None
