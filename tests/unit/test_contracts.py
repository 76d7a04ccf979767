"""The .avsc files, their pydantic mirrors and the round trip through both codecs."""

from __future__ import annotations

import pytest

from riverops.schemas import events as ev
from riverops.schemas.codec import ConfluentCodec, SingleObjectCodec, make_codec
from riverops.schemas.contracts import SCHEMA_NAMES, SchemaStore


def test_every_event_type_has_a_schema_and_a_model() -> None:
    assert set(SCHEMA_NAMES) == set(ev.EVENT_TYPES)
    store = SchemaStore.bundled()
    for name in SCHEMA_NAMES:
        assert store.reader(name).name == name


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_pydantic_model_mirrors_the_avsc_fields(name: str) -> None:
    contract = SchemaStore.bundled().reader(name)
    assert tuple(ev.EVENT_TYPES[name].model_fields) == contract.field_names


def test_fingerprints_are_distinct() -> None:
    store = SchemaStore.bundled()
    prints = {store.reader(name).fingerprint for name in SCHEMA_NAMES}
    assert len(prints) == len(SCHEMA_NAMES)


@pytest.mark.parametrize("encoding", ["single-object", "confluent"])
def test_every_event_round_trips(encoding: str, sample_events: list[ev.Event]) -> None:
    codec = make_codec(encoding, registry_url="mock://contracts")  # type: ignore[arg-type]
    assert isinstance(codec, SingleObjectCodec if encoding == "single-object" else ConfluentCodec)
    for event in sample_events:
        payload = codec.encode(event.schema_name, event.to_avro())
        back = type(event).from_avro(codec.decode(event.schema_name, payload))
        assert back == event


def test_batch_api_round_trips(sample_events: list[ev.Event]) -> None:
    codec = SingleObjectCodec()
    features = [e for e in sample_events if isinstance(e, ev.FeatureEvent)] * 50
    payloads = codec.encode_many("FeatureEvent", [e.to_avro() for e in features])
    decoded = codec.decode_many("FeatureEvent", payloads)
    assert [ev.FeatureEvent.from_avro(d) for d in decoded if isinstance(d, dict)] == features


def test_booleans_stay_booleans_and_ints_become_doubles() -> None:
    codec = SingleObjectCodec()
    record = {"event_id": "e", "model": "m", "entity_id": "x", "event_time": 0,
              "features": {"flag": True, "n": 3, "s": "3"}}
    features = codec.decode("FeatureEvent", codec.encode("FeatureEvent", record))["features"]
    assert features == {"flag": True, "n": 3.0, "s": "3"}
    assert type(features["flag"]) is bool and type(features["n"]) is float


def test_encode_rejects_a_record_that_does_not_fit() -> None:
    from riverops.schemas.errors import EncodeError

    with pytest.raises(EncodeError):
        SingleObjectCodec().encode("LabelEvent", {"event_id": "e", "model": "m", "label_time": 0})


def test_decoding_as_the_wrong_type_is_an_error(sample_events: list[ev.Event]) -> None:
    from riverops.schemas.errors import DecodeError

    codec = SingleObjectCodec()
    label = next(e for e in sample_events if isinstance(e, ev.LabelEvent))
    with pytest.raises(DecodeError, match="expected a FeatureEvent"):
        codec.decode("FeatureEvent", codec.encode("LabelEvent", label.to_avro()))
