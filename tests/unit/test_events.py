"""Validation at the edges: finite numbers, non-empty ids, known enums, UTC millis."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from riverops.schemas import events as ev

BASE = {"event_id": "e", "model": "fraud", "entity_id": "c", "event_time": 0, "features": {"a": 1.0}}


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": ""},
        {"model": ""},
        {"model": "has space"},
        {"features": {"a": math.nan}},
        {"features": {"a": math.inf}},
        {"features": {"": 1.0}},
        {"features": {"a": [1, 2]}},
        {"event_time": True},
        {"extra_field": 1},
    ],
)
def test_bad_feature_events_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ev.FeatureEvent.model_validate({**BASE, **change})


def test_unknown_enum_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        ev.RetrainRequest(
            request_id="r", model="m", reason="whim", requested_by="me", requested_at=0  # type: ignore[arg-type]
        )


def test_scores_must_be_probabilities() -> None:
    with pytest.raises(ValidationError):
        ev.MadePrediction(version=1, variant="champion", prediction=True, scores={"True": 1.5})


def test_timestamps_are_utc_and_truncated_to_millis() -> None:
    paris = timezone(timedelta(hours=1))
    event = ev.FeatureEvent.model_validate(
        {**BASE, "event_time": datetime(2026, 1, 1, 13, 0, 0, 123456, tzinfo=paris)}
    )
    assert event.event_time == datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    naive = ev.FeatureEvent.model_validate({**BASE, "event_time": datetime(2026, 1, 1)})
    assert naive.event_time.tzinfo is UTC
    millis = ev.FeatureEvent.model_validate({**BASE, "event_time": 1_000})
    assert millis.event_time == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_feature_types_are_kept() -> None:
    event = ev.FeatureEvent.model_validate({**BASE, "features": {"b": True, "n": 2, "s": "x", "z": None}})
    assert event.features == {"b": True, "n": 2.0, "s": "x", "z": None}
    assert type(event.features["b"]) is bool


def test_model_version_key() -> None:
    artifact = ev.Artifact(sha256="0" * 64, signature="1" * 64, size=0, uri="file:///x")
    version = ev.ModelVersion(
        model="fraud", version=2, stage="candidate", spec="logreg", task="binary",
        artifact=artifact, changed_by="me", reason="test", changed_at=0,
    )
    assert version.key == "fraud:2"
