"""Explained predictions on the wire: the joiner's no-decode fast path walks the new field too.

The joiner keeps only (version, variant, prediction, scores) of a prediction, sliced out of
the payload without decoding it when the writer schema is a layout it knows; predictions
of version 2 (with ``explanation``) and of version 1 (without) both take that path.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from riverops.roles.joiner.state import (
    admit,
    compact_prediction,
    decode_compact,
    prediction_layout_fingerprint,
    slice_prediction,
)
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.errors import DecodeError

PREDICTION = {"event_id": "e1", "model": "fraud", "version": 4, "variant": "challenger",
              "prediction": False, "scores": {"True": 0.3, "False": 0.7}, "latency": 0.002,
              "event_time": 1000, "predicted_at": 1003}
EXPLAINED = {**PREDICTION, "explanation": {"intercept": -0.75, "rest": -0.1, "contributions": [
    {"feature": f"merchant_category_{name}", "value": -0.05 * i} for i, name in
    enumerate(("grocery", "fuel", "café", "travel"), start=1)]}}


def _previous() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files("riverops.schemas").joinpath(
        "avro/previous/PredictionEvent.1.avsc").read_text("utf-8"))
    return schema


@pytest.mark.parametrize("record", [PREDICTION, EXPLAINED], ids=["null", "explained"])
def test_the_fast_path_slices_current_predictions_like_a_decode(record: dict[str, Any]) -> None:
    codec = SingleObjectCodec()
    payload = codec.encode("PredictionEvent", record)
    assert payload[2:10] == prediction_layout_fingerprint()
    sliced = slice_prediction(payload)
    assert sliced == compact_prediction(codec.decode("PredictionEvent", payload))
    assert admit("PredictionEvent", payload, codec) == sliced
    assert decode_compact(sliced[2])["scores"] == record["scores"]


def test_the_fast_path_slices_predictions_of_the_previous_schema() -> None:
    payload = SingleObjectCodec(SchemaStore.bundled().with_reader(_previous())).encode(
        "PredictionEvent", PREDICTION)
    assert payload[2:10] == prediction_layout_fingerprint(version=1)
    reader = SingleObjectCodec()
    assert admit("PredictionEvent", payload, reader) == slice_prediction(payload, explained=False)
    assert admit("PredictionEvent", payload, reader) == compact_prediction(
        reader.decode("PredictionEvent", payload))


def test_a_cut_or_padded_explanation_is_a_decode_error() -> None:
    payload = SingleObjectCodec().encode("PredictionEvent", EXPLAINED)
    for broken in (payload[:-3], payload + b"\x00", payload[:-20]):
        with pytest.raises(DecodeError):
            slice_prediction(broken)
    with pytest.raises(DecodeError):  # a v1 payload read as v2 lacks the union byte
        slice_prediction(SingleObjectCodec(SchemaStore.bundled().with_reader(_previous())).encode(
            "PredictionEvent", PREDICTION))
