"""Replay a CSV or Parquet file of features or labels into Kafka, rate-limited."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import ValidationError

from riverops.kafka.producer import EventProducer
from riverops.schemas.errors import ConfigError
from riverops.schemas.events import FeatureEvent, LabelEvent

__all__ = ["ReplayKind", "ReplayReport", "read_table", "events_from_table", "replay"]

ReplayKind = Literal["features", "labels"]
FEATURE_COLUMNS = ("event_id", "model", "entity_id", "event_time")
LABEL_COLUMNS = ("event_id", "model", "label", "label_time")


@dataclass
class ReplayReport:
    sent: int = 0
    invalid: list[str] = field(default_factory=list)  # "row N: reason"
    seconds: float = 0.0


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``) file as a DataFrame."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    raise ConfigError(f"{path}: expected a .csv, .csv.gz, .tsv or .parquet file")


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None  # pandas NaN means a missing value
    if hasattr(value, "item"):
        return value.item()  # numpy scalar -> Python
    return value


def events_from_table(
    frame: pd.DataFrame, kind: ReplayKind, *, model: str | None = None
) -> Iterator[tuple[int, FeatureEvent | LabelEvent | str]]:
    """(row number, event) per row, or (row number, reason) for a row that is not valid.

    Feature files need event_id and entity_id (event_time optional); every other column
    is a feature. Label files need event_id and label (label_time optional). ``model``
    fills a missing model column.
    """
    required = ("event_id", "entity_id") if kind == "features" else ("event_id", "label")
    missing = [c for c in required if c not in frame.columns]
    if missing or ("model" not in frame.columns and model is None):
        raise ConfigError(f"missing columns {missing + ([] if model or 'model' in frame.columns else ['model'])}")
    reserved = FEATURE_COLUMNS if kind == "features" else LABEL_COLUMNS
    feature_columns = [c for c in frame.columns if c not in reserved]
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    for number, row in enumerate(frame.to_dict(orient="records"), start=1):
        values = {k: _clean(v) for k, v in row.items()}
        try:
            if kind == "features":
                yield number, FeatureEvent(
                    event_id=str(values["event_id"]), model=str(values.get("model") or model),
                    entity_id=str(values["entity_id"]),
                    event_time=values.get("event_time") or now,
                    features={c: values[c] for c in feature_columns},
                )
            else:
                yield number, LabelEvent(
                    event_id=str(values["event_id"]), model=str(values.get("model") or model),
                    label=values["label"], label_time=values.get("label_time") or now,
                )
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            yield number, reasons


def replay(
    producer: EventProducer,
    events: Iterator[tuple[int, FeatureEvent | LabelEvent | str]],
    *,
    rate: float | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Send every valid event at most ``rate`` per second; invalid rows are reported."""
    report = ReplayReport()
    started = time.monotonic()
    for number, event in events:
        if isinstance(event, str):
            report.invalid.append(f"row {number}: {event}")
        else:
            producer.send(event)
            report.sent += 1
            if rate:
                ahead = report.sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if on_progress is not None:
            on_progress(1)
    producer.flush()
    report.seconds = time.monotonic() - started
    return report
