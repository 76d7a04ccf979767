"""How `riverops tail` renders records: decoded, JSON-safe, errors as lines."""

from __future__ import annotations

import json

import pytest

from riverops.cli.tail import json_safe, render_record, resolve_topic
from riverops.kafka.topics import TopicCatalogue
from riverops.schemas import events as ev
from riverops.schemas.codec import make_codec
from riverops.schemas.errors import TopicError
from riverops.settings import Settings

from ..conftest import make_sample_events


def _render(value: bytes | None, schema: str, key: bytes | None = b"e-1") -> dict[str, object]:
    return render_record(make_codec(), schema, topic="t.x", partition=1, offset=7,
                         timestamp_ms=1_700_000_000_123, key=key, value=value)


@pytest.mark.parametrize("event", make_sample_events(), ids=lambda e: e.schema_name)
def test_every_event_type_renders_as_json_that_reads_back(event: ev.Event) -> None:
    payload = make_codec().encode(event.schema_name, event.to_avro())
    line = _render(payload, event.schema_name)
    text = json.dumps(line, allow_nan=False)  # raises on anything JSON cannot carry
    assert json.loads(text) == line
    assert line["timestamp"] == "2023-11-14T22:13:20.123000+00:00"
    assert line["key"] == "e-1" and "error" not in line
    assert isinstance(line["value"], dict)


def test_bytes_datetimes_and_non_finite_numbers() -> None:
    (dead,) = [e for e in make_sample_events() if isinstance(e, ev.DeadLetter)]
    line = _render(make_codec().encode("DeadLetter", dead.to_avro()), "DeadLetter")
    value = line["value"]
    assert isinstance(value, dict)
    assert value["value"] == "\x00garbage" and value["key"] == "e-9"
    assert value["failed_at"] == dead.failed_at.isoformat()
    assert json_safe([float("inf"), -float("inf"), float("nan"), b"\xff"]) == [
        "Infinity", "-Infinity", "NaN", "\xff"]


def test_an_undecodable_record_is_a_line_with_the_error_and_the_raw_bytes() -> None:
    line = _render(b"\x00\x01 not a record", "FeatureEvent", key=b"\xff\xfe")
    assert line["error"] and "value" not in line
    assert line["raw"] == "\x00\x01 not a record"
    assert line["key"] == "\xff\xfe"  # not UTF-8: Avro's JSON bytes
    json.dumps(line, allow_nan=False)


def test_a_tombstone_has_a_null_value() -> None:
    assert _render(None, "ModelVersion")["value"] is None


def test_topics_are_roles_or_catalogue_names() -> None:
    catalogue = TopicCatalogue.from_settings(Settings(topic_prefix="p."))
    assert resolve_topic(catalogue, "deadletter").name == "p.deadletter"
    assert resolve_topic(catalogue, "p.model-registry").schema == "ModelVersion"
    with pytest.raises(TopicError, match="'q.features' is neither"):
        resolve_topic(catalogue, "q.features")
