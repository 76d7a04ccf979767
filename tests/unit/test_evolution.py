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
