"""The training frame: a window of FeedbackEvent dicts as one pandas DataFrame.

:func:`feedback_frame` keeps one row per event in (event_time, event_id) order, so the
frame, and a model trained on it, does not depend on the order the feedback arrived in;
:func:`feature_rows` turns the frame back into River's feature dicts. A record that
cannot be trained on (no label, no features, a feature map that
:func:`~riverops.schemas.validation.check_feature_map` refuses, a time that is not one)
raises InvalidEventError or is handed to ``on_invalid`` and left out.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> records = [{"event_id": f"e{i}", "event_time": t0 + timedelta(seconds=i),
...             "features": {"x": float(i % 7)}, "label": i % 7 > 3,
...             "label_time": t0, "predictions": []} for i in range(50)]
>>> frame = feedback_frame(records, window_events=40)
>>> len(frame), frame["event_id"].iloc[0], [c for c in frame.columns if c.startswith("feature:")]
(40, 'e10', ['feature:x'])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from riverops.kafka.topics import Source
from riverops.models.labels import positive_score
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.validation import check_feature_map

__all__ = ["FEATURE_PREFIX", "Source", "feedback_frame", "feature_rows"]

FEATURE_PREFIX = "feature:"
"""Feature columns are named ``feature:<name>``: a feature may be called ``label``."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _micros(value: Any, what: str, event_id: str) -> int:
    """A timestamp (tz-aware datetime, naive = UTC, or epoch milliseconds) in epoch µs."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _US
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return int(value) * 1000
    raise InvalidEventError(f"feedback {event_id}: {what} is not a timestamp: {value!r}")


def _check(record: Mapping[str, Any]) -> tuple[str, int]:
    """The record's event_id and event time (µs) if it can be trained on; else raise."""
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEventError("feedback without an event_id")
    if record.get("label") is None:
        raise InvalidEventError(f"feedback {event_id} has no label")
    features = record.get("features")
    if not isinstance(features, Mapping):
        raise InvalidEventError(f"feedback {event_id} has no features map")
    if record.get("label_time") is not None:
        _micros(record["label_time"], "label_time", event_id)
    if not all(isinstance(name, str) for name in features):
        raise InvalidEventError(f"feedback {event_id}: a feature name is not a string")
    try:
        check_feature_map(features)
    except InvalidEventError as exc:
        raise InvalidEventError(f"feedback {event_id}: {exc}") from exc
    return event_id, _micros(record.get("event_time"), "event_time", event_id)


def _score_or_nan(scores: Mapping[str, float]) -> float:
    score = positive_score(scores)
    return math.nan if score is None else score


def feedback_frame(
    records: Iterable[Mapping[str, Any]],
    *,
    window_events: int | None = None,
    window_seconds: float | None = None,
    sources: Sequence[Source] | None = None,
    on_invalid: Callable[[Mapping[str, Any], InvalidEventError], None] | None = None,
) -> pd.DataFrame:
    """One row per feedback event of the window, sorted by (event_time, event_id).

    Duplicates (same event_id) keep the first record seen. The window is the last
    ``window_events`` events and the events of the last ``window_seconds`` seconds of
    event time, ending at the latest event time seen (no clock); when both are given
    both limits apply, so the smaller window wins. ``None`` means no limit.

    Columns: ``event_id``, ``event_time`` and ``label_time`` (UTC), ``label`` (as sent),
    ``champion_version``, ``champion_prediction`` and ``champion_score`` (P(True), NaN if
    unknown) from the first champion prediction made for the event, ``topic``,
    ``partition`` and ``offset`` when ``sources`` (one per record) are given, and one
    ``feature:<name>`` column per feature of the window, in name order, NaN or None where
    an event lacks it. Sorting by event_id among equal times and naming the columns in
    order make the frame, and the model trained on it, independent of arrival order.

    A record that cannot be trained on raises InvalidEventError or, with ``on_invalid``,
    is handed to it and left out.
    """
    if window_events is not None and window_events < 1:
        raise ConfigError(f"window_events must be at least 1, got {window_events}")
    if window_seconds is not None and not (window_seconds > 0 and math.isfinite(window_seconds)):
        raise ConfigError(f"window_seconds must be a positive number, got {window_seconds}")
    records = list(records)
    if sources is not None and len(sources) != len(records):
        raise ConfigError(f"{len(records)} records but {len(sources)} sources")
    kept: dict[str, tuple[int, int]] = {}  # event_id -> (event time µs, index in records)
    for i, record in enumerate(records):
        try:
            event_id, micros = _check(record)
        except InvalidEventError as exc:
            if on_invalid is None:
                raise
            on_invalid(record, exc)
            continue
        kept.setdefault(event_id, (micros, i))
    order = sorted(kept.items(), key=lambda item: (item[1][0], item[0]))
    if window_seconds is not None and order:
        cutoff = order[-1][1][0] - window_seconds * 1e6
        order = [item for item in order if item[1][0] > cutoff]
    if window_events is not None:
        order = order[-window_events:]
    return _build(records, [i for _, (_, i) in order], sources)


def _build(records: list[Mapping[str, Any]], picked: list[int],
           sources: Sequence[Source] | None) -> pd.DataFrame:
    window = [records[i] for i in picked]
    columns: dict[str, Any] = {
        "event_id": [r["event_id"] for r in window],
        "event_time": pd.to_datetime(
            [_micros(r["event_time"], "event_time", r["event_id"]) for r in window],
            unit="us", utc=True),
        "label_time": pd.to_datetime(
            [_micros(r.get("label_time"), "label_time", r["event_id"])
             if r.get("label_time") is not None else None for r in window],
            unit="us", utc=True),
        "label": pd.Series([r["label"] for r in window], dtype=object),
    }
    champions = [
        next((p for p in r.get("predictions") or () if p.get("variant") == "champion"), None)
        for r in window
    ]
    columns["champion_version"] = pd.array(
        [int(p["version"]) if p else None for p in champions], dtype="Int64")
    columns["champion_prediction"] = pd.Series(
        [p.get("prediction") if p else None for p in champions], dtype=object)
    columns["champion_score"] = np.array(
        [_score_or_nan(p.get("scores") or {}) if p else math.nan for p in champions],
        dtype=np.float64)
    if sources is not None:
        picked_sources = [sources[i] for i in picked]
        columns["topic"] = pd.Series([s[0] for s in picked_sources], dtype=object)
        columns["partition"] = np.array([s[1] for s in picked_sources], dtype=np.int64)
        columns["offset"] = np.array([s[2] for s in picked_sources], dtype=np.int64)
    for name in sorted({name for r in window for name in r["features"]}):
        columns[FEATURE_PREFIX + name] = pd.Series([r["features"].get(name) for r in window])
    return pd.DataFrame(columns)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def feature_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The feature dicts of the frame's rows, keyed by feature name, without missing values
    (River reads an absent key as missing).

    >>> feature_rows(pd.DataFrame({"feature:a": [1.0, float("nan")], "feature:b": ["x", None],
    ...                            "label": [True, False]}))
    [{'a': 1.0, 'b': 'x'}, {}]
    """
    cols = [c for c in frame.columns if isinstance(c, str) and c.startswith(FEATURE_PREFIX)]
    cut = len(FEATURE_PREFIX)
    return [
        {c[cut:]: v for c, v in row.items() if not _missing(v)}
        for row in frame[cols].to_dict("records")
    ]
