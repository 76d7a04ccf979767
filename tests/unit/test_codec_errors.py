"""Corrupted, truncated and unknown payloads give the typed error with the raw bytes."""

from __future__ import annotations

import random

import pytest

from riverops.schemas import events as ev
from riverops.schemas.codec import SingleObjectCodec, make_codec
from riverops.schemas.errors import DecodeError, UnknownSchemaError


@pytest.fixture(params=["single-object", "confluent"])
def codec(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return make_codec(request.param, registry_url=f"mock://errors-{request.param}")


@pytest.fixture
def feature_payload(codec, sample_events: list[ev.Event]) -> bytes:  # type: ignore[no-untyped-def]
    event = next(e for e in sample_events if isinstance(e, ev.FeatureEvent))
    return codec.encode("FeatureEvent", event.to_avro())  # type: ignore[no-any-return]


def _decode_error(codec, payload: bytes) -> DecodeError:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError) as info:
        codec.decode("FeatureEvent", payload)
    return info.value


def test_truncated_payloads(codec, feature_payload: bytes) -> None:  # type: ignore[no-untyped-def]
    for cut in range(len(feature_payload)):
        error = _decode_error(codec, feature_payload[:cut])
        assert error.raw == feature_payload[:cut]


def test_trailing_garbage(codec, feature_payload: bytes) -> None:  # type: ignore[no-untyped-def]
    error = _decode_error(codec, feature_payload + b"\x01\x02")
    assert "trailing" in error.reason and error.raw == feature_payload + b"\x01\x02"


def test_unknown_writer_schema(codec, feature_payload: bytes) -> None:  # type: ignore[no-untyped-def]
    if isinstance(codec, SingleObjectCodec):
        payload = feature_payload[:2] + b"\xde\xad\xbe\xef\x00\x00\x00\x01" + feature_payload[10:]
    else:
        payload = b"\x00\x00\x00\x7f\xff" + feature_payload[5:]
    error = _decode_error(codec, payload)
    assert isinstance(error, UnknownSchemaError) and error.raw == payload


def test_random_bytes_never_escape_as_another_error(codec, feature_payload: bytes) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    header = feature_payload[: 10 if isinstance(codec, SingleObjectCodec) else 5]
    results = codec.decode_many(
        "FeatureEvent",
        [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80))) for _ in range(300)]
        + [header + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80))) for _ in range(700)]
        + [bytes(b ^ (1 << rng.randrange(8)) if rng.random() < 0.05 else b for b in feature_payload) for _ in range(300)],
    )
    for result in results:
        assert isinstance(result, (dict, DecodeError))
        if isinstance(result, DecodeError):
            assert isinstance(result.raw, bytes)


def test_batch_keeps_each_error_in_place(codec, feature_payload: bytes) -> None:  # type: ignore[no-untyped-def]
    results = codec.decode_many("FeatureEvent", [feature_payload, b"junk", feature_payload[:7], feature_payload])
    assert [type(r).__name__ for r in results] == ["dict", "DecodeError", "DecodeError", "dict"]
    assert isinstance(results[1], DecodeError) and results[1].raw == b"junk"


def test_tombstone_is_an_error(codec) -> None:  # type: ignore[no-untyped-def]
    error = _decode_error(codec, None)  # type: ignore[arg-type]
    assert error.raw == b""
