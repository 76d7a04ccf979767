"""Schema evolution: a v1 reader reads v2 records and the reverse (added field with default)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from riverops.schemas.codec import ConfluentCodec, SingleObjectCodec
from riverops.schemas.contracts import SchemaStore

V1: dict[str, Any] = json.loads(
    resources.files("riverops.schemas").joinpath("avro/FeatureEvent.avsc").read_text("utf-8")
)
V2 = copy.deepcopy(V1)
V2["fields"].append({"name": "source", "type": "string", "default": "unknown"})

RECORD = {"event_id": "e", "model": "m", "entity_id": "x", "event_time": 0, "features": {"a": 1.0}}


def _codecs(kind: str) -> tuple[Any, Any]:
    """(a codec that writes v2, a codec that reads into v1), sharing writer knowledge."""
    v1_store = SchemaStore.bundled().with_writer(V2)
    v2_store = SchemaStore.bundled().with_reader(V2)
    if kind == "single-object":
        return SingleObjectCodec(v2_store), SingleObjectCodec(v1_store)
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient.new_client({"url": "mock://evolution"})
    return ConfluentCodec(client, v2_store), ConfluentCodec(client, SchemaStore.bundled())


@pytest.mark.parametrize("kind", ["single-object", "confluent"])
def test_v1_reader_reads_v2_records(kind: str) -> None:
    v2_codec, v1_codec = _codecs(kind)
    payload = v2_codec.encode("FeatureEvent", {**RECORD, "source": "pos"})
    decoded = v1_codec.decode("FeatureEvent", payload)
    assert "source" not in decoded and decoded["features"] == {"a": 1.0}


@pytest.mark.parametrize("kind", ["single-object", "confluent"])
def test_v2_reader_reads_v1_records_with_the_default(kind: str) -> None:
    v2_codec, v1_codec = _codecs(kind)
    payload = v1_codec.encode("FeatureEvent", RECORD)
    assert v2_codec.decode("FeatureEvent", payload)["source"] == "unknown"


def test_unknown_writer_without_evolution_knowledge() -> None:
    from riverops.schemas.errors import UnknownSchemaError

    payload = SingleObjectCodec(SchemaStore.bundled().with_reader(V2)).encode(
        "FeatureEvent", {**RECORD, "source": "pos"}
    )
    with pytest.raises(UnknownSchemaError):
        SingleObjectCodec().decode("FeatureEvent", payload)


def test_a_registry_record_of_the_previous_schema_decodes_into_the_current_one(
    sample_events: list[Any],
) -> None:
    from riverops.schemas.events import ModelVersion

    previous = json.loads(resources.files("riverops.schemas").joinpath("avro/previous/ModelVersion.1.avsc").read_text())
    record = next(e for e in sample_events if isinstance(e, ModelVersion))
    old = {k: v for k, v in record.to_avro().items() if k != "reigns"}
    writer = SingleObjectCodec(SchemaStore.bundled().with_reader(previous))
    payload = writer.encode("ModelVersion", old)
    decoded = ModelVersion.from_avro(SingleObjectCodec().decode("ModelVersion", payload))
    assert decoded.reigns == []
    assert decoded == record.model_copy(update={"reigns": []})


PREDICTION = {"event_id": "e", "model": "m", "version": 2, "variant": "champion", "prediction": True,
              "scores": {"True": 0.8, "False": 0.2}, "latency": 0.001, "event_time": 0,
              "predicted_at": 1}
EXPLANATION = {"intercept": -1.5, "rest": 0.25, "contributions": [
    {"feature": "amount", "value": 2.0}, {"feature": "merchant_category_travel", "value": 0.5}]}


def _previous_prediction_schema() -> dict[str, Any]:
    text = resources.files("riverops.schemas").joinpath("avro/previous/PredictionEvent.1.avsc").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_the_previous_prediction_schema_is_the_current_one_without_the_explanation() -> None:
    previous = tuple(field["name"] for field in _previous_prediction_schema()["fields"])
    assert (*previous, "explanation") == SchemaStore.bundled().reader("PredictionEvent").field_names


@pytest.mark.parametrize("kind", ["single-object", "confluent"])
def test_a_prediction_of_the_previous_schema_decodes_with_no_explanation(kind: str) -> None:
    from riverops.schemas.events import PredictionEvent

    old_store = SchemaStore.bundled().with_reader(_previous_prediction_schema())
    if kind == "single-object":
        old, new = SingleObjectCodec(old_store), SingleObjectCodec()
    else:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        client = SchemaRegistryClient.new_client({"url": "mock://evolution-prediction-old"})
        old, new = ConfluentCodec(client, old_store), ConfluentCodec(client, SchemaStore.bundled())
    decoded = new.decode("PredictionEvent", old.encode("PredictionEvent", PREDICTION))
    assert decoded["explanation"] is None
    assert PredictionEvent.from_avro(decoded).explanation is None


@pytest.mark.parametrize("kind", ["single-object", "confluent"])
def test_a_reader_of_the_previous_schema_reads_explained_predictions(kind: str) -> None:
    old_store = SchemaStore.bundled().with_reader(_previous_prediction_schema())
    if kind == "single-object":
        new, old = SingleObjectCodec(), SingleObjectCodec(old_store)
    else:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        client = SchemaRegistryClient.new_client({"url": "mock://evolution-prediction-new"})
        new, old = ConfluentCodec(client, SchemaStore.bundled()), ConfluentCodec(client, old_store)
    payload = new.encode("PredictionEvent", {**PREDICTION, "explanation": EXPLANATION})
    decoded = old.decode("PredictionEvent", payload)
    assert "explanation" not in decoded
    assert {**decoded, "event_time": 0, "predicted_at": 1} == PREDICTION
    assert new.decode("PredictionEvent", payload)["explanation"] == EXPLANATION


def test_a_writer_that_leaves_the_explanation_out_writes_null() -> None:
    codec = SingleObjectCodec()  # e.g. the online role, which explains nothing
    assert codec.decode("PredictionEvent", codec.encode("PredictionEvent", PREDICTION))["explanation"] is None
    from riverops.schemas.errors import EncodeError

    with pytest.raises(EncodeError):  # a field without a default may not be left out
        codec.encode("PredictionEvent", {k: v for k, v in PREDICTION.items() if k != "scores"})
    with pytest.raises(EncodeError):  # nor may an unknown one be added
        codec.encode("PredictionEvent", {**PREDICTION, "explanations": None})


# --- DriftEvent v2: the signal a concept alarm watched ------------------------------------

DRIFT = {"model": "fraud", "version": 3, "variant": "champion", "kind": "concept", "detector": "ADWIN",
         "statistic": 0.61, "threshold": 0.05, "feature": None, "samples": 24_415, "detected_at": 0}


def _previous_drift_schema() -> dict[str, Any]:
    text = resources.files("riverops.schemas").joinpath("avro/previous/DriftEvent.1.avsc").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _drift_codecs(kind: str, url: str) -> tuple[Any, Any]:
    """(a codec of the current DriftEvent, one of version 1), sharing what they wrote."""
    old_store = SchemaStore.bundled().with_reader(_previous_drift_schema())
    if kind == "single-object":
        return SingleObjectCodec(), SingleObjectCodec(old_store)
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient.new_client({"url": url})
    return ConfluentCodec(client, SchemaStore.bundled()), ConfluentCodec(client, old_store)


def test_the_previous_drift_schema_is_the_current_one_without_the_signal() -> None:
    previous = tuple(field["name"] for field in _previous_drift_schema()["fields"])
    assert (*previous, "signal") == SchemaStore.bundled().reader("DriftEvent").field_names


@pytest.mark.parametrize("kind", ["single-object", "confluent"])
def test_an_alarm_of_the_previous_schema_decodes_with_no_signal(kind: str) -> None:
    from riverops.schemas.events import DriftEvent

    new, old = _drift_codecs(kind, "mock://evolution-drift-old")
    decoded = new.decode("DriftEvent", old.encode("DriftEvent", DRIFT))
    assert decoded["signal"] is None
    assert DriftEvent.from_avro(decoded).signal is None


@pytest.mark.parametrize("kind", ["single-object", "confluent"])
def test_a_reader_of_the_previous_schema_reads_alarms_that_name_their_signal(kind: str) -> None:
    from riverops.schemas.events import DriftEvent

    new, old = _drift_codecs(kind, "mock://evolution-drift-new")
    payload = new.encode("DriftEvent", {**DRIFT, "signal": "log_loss"})
    decoded = old.decode("DriftEvent", payload)
    assert "signal" not in decoded and decoded["statistic"] == 0.61
    assert DriftEvent.from_avro(new.decode("DriftEvent", payload)).signal == "log_loss"
