"""The codec's fast path (riverops.schemas.fast, cavro) agrees with fastavro, the reference:
the same bytes for every event of every schema, the same records back, across schema
versions; and on a truncated, padded or corrupted body it either declines (the codec then
asks fastavro, whose error is the reference) or returns exactly what fastavro reads."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import fastavro
import pytest

from riverops.schemas import fast
from riverops.schemas.contracts import Contract, SchemaStore, parse_contract
from riverops.schemas.features import feature_schema, feedback_schema

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="cavro is not installed: fastavro alone")

STORE = SchemaStore.bundled()
HEAD = b"\xc3\x01" + bytes(8)  # a single-object header; what it says is not the body's business


def _reference_body(contract: Contract, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, contract.parsed, record, strict_allow_default=True)
    return buffer.getvalue()


def _reference_read(writer: Contract, reader: Contract | None, payload: bytes) -> dict[str, Any] | None:
    """fastavro's record, or None where the codec refuses the payload (an error, trailing bytes)."""
    buffer = io.BytesIO(payload)
    buffer.seek(len(HEAD))
    try:
        record = fastavro.schemaless_reader(buffer, writer.parsed, None if reader is None else reader.parsed)
    except Exception:  # noqa: BLE001 - any refusal
        return None
    return record if buffer.tell() == len(payload) else None  # type: ignore[return-value]


def _typed() -> tuple[Contract, Contract, dict[str, Any]]:
    """A typed FeatureEvent with every kind of feature, its typed FeedbackEvent, and features."""
    kinds = {"amount": "double", "ratio": "float", "count": "long", "hour": "int", "is_new": "boolean",
             "country": "string", "mcc": "string"}
    schema = feature_schema("fraud", kinds, nullable={"mcc", "ratio"})
    generic = json.loads(resources.files("riverops.schemas").joinpath("avro/FeedbackEvent.avsc").read_text())
    features = {"amount": 12.5, "ratio": 0.25, "count": 2**40, "hour": -3, "is_new": True,
                "country": "FR é", "mcc": None}
    return parse_contract(schema), parse_contract(feedback_schema(schema, generic)), features


def _cases() -> list[tuple[Contract, dict[str, Any]]]:
    """(writer, record): one of every bundled event, a typed feature and feedback event, and
    timestamps at every millisecond position a float could get wrong."""
    from tests.conftest import make_sample_events

    cases = [(STORE.reader(type(e).__name__), e.to_avro()) for e in make_sample_events()]
    features, feedback, values = _typed()
    when = datetime(2026, 12, 6, tzinfo=UTC)
    cases.append((features, {"event_id": "e-2", "model": "fraud", "entity_id": "c", "event_time": when,
                             "features": values}))
    cases.append((feedback, {"event_id": "e-2", "model": "fraud", "entity_id": "c", "event_time": when,
                             "features": values, "label": True, "label_time": when + timedelta(milliseconds=4_092),
                             "predictions": [{"version": 1, "variant": "champion", "prediction": 0.5,
                                              "scores": {"True": 0.5, "False": 0.5}}]}))
    label = STORE.reader("LabelEvent")
    rng = random.Random(3)
    for _ in range(200):
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(0, 4 * 10**12))
        cases.append((label, {"event_id": "e", "model": "m", "label": 1.5, "label_time": at}))
    return cases


CASES = _cases()


@pytest.mark.parametrize("index", range(len(CASES)))
def test_the_same_bytes_and_the_same_record(index: int) -> None:
    contract, record = CASES[index]
    body = fast.encoder(contract)(record)
    assert body == _reference_body(contract, record)
    assert fast.decoder(contract, None, len(HEAD))(HEAD + body) == _reference_read(contract, None, HEAD + body)


def test_records_of_a_previous_schema_resolve_as_fastavro_resolves_them() -> None:
    folder = resources.files("riverops.schemas").joinpath("avro/previous")
    resolved = 0
    for path in folder.iterdir():
        if not path.name.endswith(".avsc"):
            continue
        old = parse_contract(json.loads(path.read_text("utf-8")))
        new = STORE.reader(old.name)
        for contract, record in CASES:
            if contract.name != old.name or contract is not new:
                continue
            payload = HEAD + _reference_body(old, {k: v for k, v in record.items() if k in old.field_names})
            expected = _reference_read(old, new, payload)
            assert expected is not None
            assert fast.decoder(old, new, len(HEAD))(payload) == expected
            resolved += 1
    assert resolved >= 3  # DriftEvent, MetricsEvent, PredictionEvent, ModelVersion


def test_a_record_cavro_refuses_is_left_to_fastavro() -> None:
    contract = STORE.reader("LabelEvent")
    # fastavro writes True as the double 1.0; cavro refuses a bool for a double
    assert fast.encoder(contract)({"event_id": "e", "model": "m", "label": 1.0, "label_time": 0}) is not None
    assert fast.encoder(contract)({"event_id": "e", "model": "m", "label": "x", "label_time": 0, "z": 1}) is None


@pytest.mark.parametrize("index", range(0, len(CASES), 7))
def test_a_damaged_body_is_declined_or_read_as_fastavro_reads_it(index: int) -> None:
    contract, record = CASES[index]
    payload = HEAD + _reference_body(contract, record)
    read = fast.decoder(contract, None, len(HEAD))
    rng = random.Random(index)
    damaged = [payload[:cut] for cut in range(len(HEAD), len(payload))]  # every truncation
    damaged += [payload + tail for tail in (b"\x00", b"\x02", fast.END_MARKER[:3], fast.END_MARKER[:15])]
    for _ in range(300):  # one to three bytes changed anywhere in the body
        body = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            body[rng.randrange(len(HEAD), len(body))] = rng.randrange(256)
        damaged.append(bytes(body))
    declined = 0
    for bad in damaged:
        got = read(bad)
        if got is None:
            declined += 1
        else:
            assert repr(got) == repr(_reference_read(contract, None, bad)), bad  # NaN included
    assert declined >= len(payload) - len(HEAD)  # every truncation at least


def test_a_schema_cavro_will_not_take_is_left_to_fastavro() -> None:
    # a resolution neither library makes (a long read as an int): cavro raises when the
    # schema is built, which the fast path turns into declining; the codec's fastavro path
    # then gives its DecodeError (a worker never sees cavro's exception)
    writer = parse_contract({"type": "record", "name": "T", "fields": [{"name": "a", "type": "long"}]})
    reader = parse_contract({"type": "record", "name": "T", "fields": [{"name": "a", "type": "int"}]})
    assert fast.decoder(writer, reader, len(HEAD))(HEAD + _reference_body(writer, {"a": 1})) is None
