"""Typed feature schemas: a model's features as a record decode into the record the generic
map gives, evolve like any schema, share a topic with generic payloads, and refuse what
does not fit at the writer, with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from riverops.schemas.codec import ConfluentCodec, SingleObjectCodec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.errors import ConfigError, DecodeError, EncodeError, UnknownSchemaError
from riverops.schemas.features import feature_schema
from riverops.settings import Settings

T0 = datetime(2026, 12, 2, tzinfo=UTC)
FRAUD = feature_schema("card-fraud", {"amount": "double", "mcc": "string", "foreign": "boolean"},
                       nullable={"mcc"})
# v2 adds a feature with a default: records of v1 still decode (into v1's fields)
FRAUD_V2 = feature_schema("card-fraud", {"amount": "double", "mcc": "string", "foreign": "boolean",
                                         "velocity": "double"}, nullable={"mcc", "velocity"})


def _event(model: str = "card-fraud", **features: Any) -> dict[str, Any]:
    return {"event_id": "e1", "model": model, "entity_id": "card-7", "event_time": T0,
            "features": features or {"amount": 42.5, "mcc": "5411", "foreign": True}}


def test_a_typed_payload_decodes_into_the_record_the_generic_map_gives() -> None:
    typed = SingleObjectCodec(SchemaStore.bundled().with_features("card-fraud", FRAUD))
    generic = SingleObjectCodec()
    event = _event()
    payload, plain = typed.encode("FeatureEvent", event), generic.encode("FeatureEvent", event)
    assert payload[2:10] != plain[2:10]  # another writer schema, and a shorter body
    assert len(payload) < len(plain)
    assert typed.decode("FeatureEvent", payload) == generic.decode("FeatureEvent", plain) == event
    # one batch may mix both, and other models stay generic
    other = typed.encode("FeatureEvent", _event("pricing", price=3.0))
    assert other[2:10] == plain[2:10]
    assert typed.decode_many("FeatureEvent", [payload, plain, other]) == [
        event, event, _event("pricing", price=3.0)]


def test_a_bad_typed_payload_is_a_decode_error_in_place_with_its_bytes() -> None:
    typed = SingleObjectCodec(SchemaStore.bundled().with_features("card-fraud", FRAUD))
    payload = typed.encode("FeatureEvent", _event())
    good, truncated, trailing = typed.decode_many("FeatureEvent", [payload, payload[:-3], payload + b"\0"])
    assert good == _event()
    assert isinstance(truncated, DecodeError) and truncated.raw == payload[:-3]
    assert isinstance(trailing, DecodeError) and "trailing bytes" in str(trailing)
    # a reader that was not given the schema says where typed schemas come from
    [unknown] = SingleObjectCodec().decode_many("FeatureEvent", [payload])
    assert isinstance(unknown, UnknownSchemaError) and "RIVEROPS_FEATURE_SCHEMAS" in str(unknown)


@pytest.mark.parametrize(("features", "why"), [
    ({"amount": 1.0, "mcc": None, "foreign": False, "typo": 1.0}, "more fields than the schema"),
    ({"mcc": "5411", "foreign": False}, "amount is specified in the schema but missing"),
    ({"amount": "lots", "mcc": None, "foreign": False}, "could not convert string to float"),
])
def test_a_writer_refuses_what_does_not_fit_its_model_schema(features: dict[str, Any], why: str) -> None:
    typed = SingleObjectCodec(SchemaStore.bundled().with_features("card-fraud", FRAUD))
    with pytest.raises(EncodeError, match=why) as refused:
        typed.encode("FeatureEvent", _event(**features))
    assert str(refused.value).startswith("riverops.features.card_fraud.FeatureEvent:")


@pytest.mark.parametrize("kind", ["single-object", "confluent"])
def test_typed_schemas_evolve_and_the_confluent_reader_needs_no_local_copy(kind: str, tmp_path: Path) -> None:
    v1 = SchemaStore.bundled().with_features("card-fraud", FRAUD)
    v2 = SchemaStore.bundled().with_features("card-fraud", FRAUD_V2).with_writer(FRAUD)
    if kind == "single-object":
        old, new = SingleObjectCodec(v1), SingleObjectCodec(v2)
        reader = new
    else:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        client = SchemaRegistryClient.new_client({"url": "mock://typed-features"})
        old, new = ConfluentCodec(client, v1), ConfluentCodec(client, v2)
        reader = ConfluentCodec(client)  # no typed schema of its own: the registry has them
        subjects = client.get_subjects()
    written_v1 = old.encode("FeatureEvent", _event())
    written_v2 = new.encode("FeatureEvent", _event(amount=1.0, mcc=None, foreign=False, velocity=9.0))
    if kind == "confluent":
        assert "riverops.features.card_fraud.FeatureEvent" in client.get_subjects()
        assert "riverops.features.card_fraud.FeatureEvent" not in subjects
    assert reader.decode("FeatureEvent", written_v1)["features"] == _event()["features"]
    assert reader.decode("FeatureEvent", written_v2)["features"]["velocity"] == 9.0


def test_the_settings_folder_gives_current_and_previous_versions(tmp_path: Path) -> None:
    (tmp_path / "previous").mkdir()
    (tmp_path / "card-fraud.avsc").write_text(json.dumps(FRAUD_V2))
    (tmp_path / "previous" / "card-fraud.1.avsc").write_text(json.dumps(FRAUD))
    codec = Settings(feature_schemas=tmp_path).codec()
    old = SingleObjectCodec(SchemaStore.bundled().with_features("card-fraud", FRAUD))
    assert codec.decode("FeatureEvent", old.encode("FeatureEvent", _event())) == _event()
    written = codec.encode("FeatureEvent", _event(amount=1.0, mcc=None, foreign=False, velocity=2.0))
    assert codec.decode("FeatureEvent", written)["features"]["velocity"] == 2.0
    assert SingleObjectCodec(old.store.with_writer(FRAUD_V2)).decode("FeatureEvent", written)[
        "features"]["velocity"] == 2.0


def _joined(codec: SingleObjectCodec, event: dict[str, Any]) -> bytes:
    """The FeedbackEvent payload a joiner with ``codec`` writes for ``event``'s features."""
    from riverops.roles.joiner import JoinCore, JoinInput

    label = codec.encode("LabelEvent", {"event_id": "e1", "model": event["model"], "label": True, "label_time": T0})
    prediction = codec.encode("PredictionEvent", {
        "event_id": "e1", "model": event["model"], "version": 1, "variant": "champion", "prediction": True,
        "scores": {"True": 0.9}, "latency": 0.001, "event_time": T0, "predicted_at": T0})
    core = JoinCore(codec=codec, encoded=True)
    core.add_many([JoinInput(kind, "e1", payload, 1_000, (kind, 0, 0)) for kind, payload in (
        ("features", codec.encode("FeatureEvent", event)), ("prediction", prediction), ("label", label))])
    (_, payload), = core.flush().encoded
    return payload


def test_each_typed_schema_has_a_typed_feedback_its_readers_decode(tmp_path: Path) -> None:
    """The joiner writes typed features' feedback as that schema's typed FeedbackEvent; a
    reader with the feature folder decodes current and previous versions into the generic
    record's shape; one without it refuses the record in place, saying what is missing."""
    (tmp_path / "previous").mkdir()
    (tmp_path / "card-fraud.avsc").write_text(json.dumps(FRAUD_V2))
    (tmp_path / "previous" / "card-fraud.1.avsc").write_text(json.dumps(FRAUD))
    reader = Settings(feature_schemas=tmp_path).codec()
    old = SingleObjectCodec(SchemaStore.bundled().with_features("card-fraud", FRAUD))
    for writer, event in ((old, _event()), (reader, _event(amount=1.0, mcc=None, foreign=False, velocity=2.0))):
        payload = _joined(writer, event)
        contract = reader.store.writer(payload[2:10])
        assert contract is not None and contract.name == "FeedbackEvent" and contract.reads_itself
        assert contract.parsed["name"] == "riverops.features.card_fraud.FeedbackEvent"
        record = reader.decode("FeedbackEvent", payload)
        assert record["features"] == event["features"] and record["label"] is True
        assert reader.decode_many("FeedbackEvent", [payload]) == [record]
        refused, = SingleObjectCodec().decode_many("FeedbackEvent", [payload])
        assert isinstance(refused, UnknownSchemaError) and "RIVEROPS_FEATURE_SCHEMAS" in str(refused)
        assert refused.raw == payload


@pytest.mark.parametrize(("change", "why"), [
    (lambda s: s["fields"][4]["type"]["fields"].append({"name": "tags", "type": {"type": "array", "items": "string"}}),
     "feature 'tags' has type"),
    (lambda s: s["fields"].pop(2), "the fields besides 'features' must be"),
    (lambda s: s["fields"][4]["type"]["fields"].append({"name": "bad-name", "type": "double"}),
     "not an Avro field name"),
])
def test_a_schema_that_is_not_a_typed_feature_event_is_refused_with_the_reason(
        change: Any, why: str, tmp_path: Path) -> None:
    schema = json.loads(json.dumps(FRAUD))
    change(schema)
    (tmp_path / "card-fraud.avsc").write_text(json.dumps(schema))
    with pytest.raises(ConfigError, match=why):
        SchemaStore.bundled().with_feature_folder(tmp_path)
    with pytest.raises(ConfigError, match="not a folder"):
        SchemaStore.bundled().with_feature_folder(tmp_path / "missing")


def test_the_cli_infers_a_schema_from_a_feature_file_that_producers_can_use(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from riverops.cli.main import cli

    table = tmp_path / "features.csv"
    table.write_text("event_id,entity_id,amount,mcc,foreign\ne1,c1,4.5,grocery,true\ne2,c2,3,,false\n")
    folder = tmp_path / "schemas"
    folder.mkdir()
    result = CliRunner().invoke(cli, ["feature-schema", "card-fraud", "--infer", str(table),
                                      "-o", str(folder / "card-fraud.avsc")])
    assert result.exit_code == 0, result.output
    codec = Settings(feature_schemas=folder).codec()
    payload = codec.encode("FeatureEvent", _event(amount=3.0, mcc=None, foreign=False))
    assert payload[2:10] == codec.store.writer_for("FeatureEvent", {"model": "card-fraud"}).fingerprint
    assert codec.decode("FeatureEvent", payload)["features"] == {"amount": 3.0, "mcc": None, "foreign": False}
    refused = CliRunner().invoke(cli, ["feature-schema", "card-fraud", "amount:decimal"])
    assert refused.exit_code == 1 and "feature 'amount' has type \"decimal\"" in refused.output
