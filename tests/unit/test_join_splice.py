"""The spliced feedback (riverops.roles.joiner.splice) is byte for byte what encoding the
decoded feedback gives, and refuses what the decoding path refuses, the same way: on a
random stream, on every refusal of the feature rule and of mismatched parts, on corrupt
bodies. Typed features are spliced into their typed FeedbackEvent, which decodes to the
decoding path's record. Layouts it does not walk (a map with a repeated key, an evolved
FeedbackEvent, the Confluent wire format) go down the decoding path."""

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
from riverops.roles.joiner.splice import Splicer
from riverops.roles.joiner.state import Item, compact_prediction
from riverops.schemas.codec import SINGLE_OBJECT_MAGIC, SingleObjectCodec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.features import feature_schema

from .test_joiner import CODEC, Feed, batches_of, label_of, make_stream, prediction_of, refusals


def _both(records: list[list[JoinInput]], codec: SingleObjectCodec = CODEC) -> tuple[Any, Any]:
    """(decoded feedback, refusals) of a dict core and of an encoded core over ``records``;
    with a codec of typed features, the encoded core's typed feedback decodes to the dict
    core's records."""
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
    if codec is CODEC:
        assert [payload for _, payload in payloads] == [codec.encode("FeedbackEvent", r) for r in dicts]
    else:
        assert [codec.decode("FeedbackEvent", payload) for _, payload in payloads] == dicts
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
    splicer = Splicer.of(CODEC)
    assert splicer is not None
    # a map with a repeated key (a decode keeps the last value): written by hand
    body = _features("e", {"a": 1.0, "b": 2.0})
    repeated = body.replace(b"\x02b", b"\x02a")
    assert splicer.splice("e", Item(0, (0, 0, repeated), (2, 0, label_of("e")), [prediction])) is None
    # typed features of a schema this codec does not write with: the decoding path
    payload = TYPED.encode("FeatureEvent", _typed_record("e", {}))
    assert splicer.splice("e", Item(0, (0, 0, payload), (2, 0, label_of("e")), [prediction])) is None
    # a FeedbackEvent that evolved: no splicing, every event decoded and encoded
    evolved = json.loads(resources.files("riverops.schemas").joinpath("avro/FeedbackEvent.avsc").read_text("utf-8"))
    evolved["fields"].append({"name": "region", "type": "string", "default": "eu"})
    assert Splicer.of(SingleObjectCodec(SchemaStore.bundled().with_reader(evolved))) is None


TYPED_SCHEMA = feature_schema("fraud", {"a": "double", "b": "float", "n": "long", "i": "int", "flag": "boolean",
                                        "s": "string", "opt": "double"}, nullable={"s", "opt"})
TYPED = SingleObjectCodec(SchemaStore.bundled().with_features("fraud", TYPED_SCHEMA))


def _typed_record(event_id: str, values: dict[str, Any], *, model: str = "fraud") -> dict[str, Any]:
    features = {"a": 1.5, "b": 0.25, "n": -7, "i": 3, "flag": True, "s": "é", "opt": None} | values
    return {"event_id": event_id, "model": model, "entity_id": "card-7", "event_time": 1_000, "features": features}


def _typed(event_id: str, values: dict[str, Any], *, model: str = "fraud") -> bytes:
    return TYPED.encode("FeatureEvent", _typed_record(event_id, values, model=model))


def test_typed_features_are_spliced_into_their_typed_feedback() -> None:
    rng, feed = random.Random(3), Feed()
    events = []
    for index in range(400):
        values = {"a": rng.gauss(0, 1), "n": rng.randrange(-2**40, 2**40), "flag": rng.random() < 0.5,
                  "s": rng.choice([None, "", "x" * rng.randrange(100)]), "opt": rng.choice([None, rng.random()])}
        events.append(_event(feed, f"t{index}", _typed(f"t{index}", values), label_of(f"t{index}", label=rng.random() < 0.5)))
    feedback, dead = _both(events, codec=TYPED)
    assert len(feedback) == 400 and dead == []
    core = JoinCore(ttl_ms=10_000, codec=TYPED, encoded=True)
    core.add_many(_event(Feed(), "t", _typed("t", {})))
    (model, payload), = core.flush().encoded
    written = TYPED.store.feedback_of(TYPED.store.writer_for("FeatureEvent", {"model": "fraud"}).fingerprint)
    assert model == "fraud" and payload[:10] == SINGLE_OBJECT_MAGIC + written.fingerprint
    assert TYPED.decode("FeedbackEvent", payload)["features"] == _typed_record("t", {})["features"]


def test_typed_refusals_are_the_same() -> None:
    feed = Feed()
    good = _typed("e", {"s": "text"})
    corrupt = {"cut": good[:-2], "trailing": good + b"\x00", "utf8": good.replace(b"text", b"t\xffxt"),
               "branch": good[:-1] + b"\x04"}  # opt's union index, null (0) made 2 (4)
    events = [
        _event(feed, "nan", _typed("nan", {"a": math.nan})),
        _event(feed, "inf", _typed("inf", {"b": -math.inf, "opt": math.inf})),
        _event(feed, "opt-nan", _typed("opt-nan", {"opt": math.nan})),
        _event(feed, "long", _typed("long", {"s": "é" * 4_097})),
        _event(feed, "ok", _typed("ok", {"s": "é" * 4_096})),
        _event(feed, "other-id", _typed("someone-else", {})),
        _event(feed, "other-model", _typed("other-model", {}), label_of("other-model", model="pricing")),
        *(_event(feed, f"c-{name}", _rekey(payload, f"c-{name}")) for name, payload in corrupt.items()),
    ]
    feedback, dead = _both(events, codec=TYPED)
    assert [r["event_id"] for r in feedback] == ["ok"]
    reasons = {o.key_.decode(): (kind, why) for o, kind, why in dead}
    assert reasons["nan"] == ("InvalidEventError", "feature 'a' is nan, not a finite number")
    assert reasons["inf"] == ("InvalidEventError", "feature 'b' is -inf, not a finite number")
    assert reasons["opt-nan"][1] == "feature 'opt' is nan, not a finite number"
    assert reasons["long"][1] == "feature 's' is a string of 4097 chars"
    assert "is not the key 'other-id'" in reasons["other-id"][1]
    assert "for model 'pricing' does not match" in reasons["other-model"][1]
    assert all(reasons[f"c-{name}"][0] == "DecodeError" for name in corrupt), reasons
