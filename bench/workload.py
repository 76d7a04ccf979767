"""The benchmark stream: 20 numeric features per event and a label that follows from them.

The label is a pure function of the features (:func:`label_of`), so every contender (the
in-process limit, faust, riverops' learner) learns the same thing from the same events
without a second lookup, and the full loop can emit each event's label on its own.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from riverops.schemas.codec import Codec
from riverops.schemas.features import feature_schema
from riverops.settings import Settings

__all__ = ["FEATURES", "MODEL", "T0", "typed_features", "rows", "label_of", "feature_records", "label_records",
           "encode_all"]

FEATURES = tuple(f"f{i:02d}" for i in range(20))
MODEL = "bench"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def typed_features(settings: Settings) -> Settings:
    """``settings`` with the bench model's features written as a typed record (20 doubles,
    :mod:`riverops.schemas.features`), its schema in ``settings.state_dir``/features."""
    folder = settings.state_dir / "features"
    folder.mkdir(parents=True, exist_ok=True)
    schema = feature_schema(MODEL, dict.fromkeys(FEATURES, "double"))
    (folder / f"{MODEL}.avsc").write_text(json.dumps(schema))
    return settings.model_copy(update={"feature_schemas": folder})


def rows(n: int, *, seed: int = 0) -> list[dict[str, float]]:
    """``n`` rows of 20 Gaussian features (the shape design.md's measured facts use)."""
    rng = random.Random(seed)
    return [{name: rng.gauss(0.0, 1.0) for name in FEATURES} for _ in range(n)]


def label_of(x: dict[str, Any]) -> bool:
    """The ground truth of a row: a linear rule a logistic regression can learn."""
    return bool(x["f00"] + 0.5 * x["f01"] - 0.5 * x["f02"] > 0.0)


def feature_records(xs: list[dict[str, float]], *, start: int = 0) -> list[dict[str, Any]]:
    """FeatureEvent records ``b{start}``, ``b{start+1}``...; event time one ms apart."""
    return [
        {"event_id": f"b{start + i}", "model": MODEL, "entity_id": f"c{(start + i) % 1000}",
         "event_time": T0 + timedelta(milliseconds=start + i), "features": x}
        for i, x in enumerate(xs)
    ]


def label_records(xs: list[dict[str, float]], *, start: int = 0) -> list[dict[str, Any]]:
    """The LabelEvent of each feature record, one second after its event time."""
    return [
        {"event_id": f"b{start + i}", "model": MODEL, "label": label_of(x),
         "label_time": T0 + timedelta(milliseconds=start + i, seconds=1)}
        for i, x in enumerate(xs)
    ]


def encode_all(codec: Codec, schema: str, records: list[dict[str, Any]], *, key: str,
               time_field: str) -> list[tuple[str, bytes, int]]:
    """(key, payload, Kafka timestamp in ms) per record, encoded ahead of the clock."""
    payloads = codec.encode_many(schema, records)
    return [(r[key], p, int(r[time_field].timestamp() * 1000))
            for r, p in zip(records, payloads, strict=True)]
