"""The demo's picture and table: rolling metrics per model version, with drift and registry marks.

:func:`plot_rolling_metrics` draws one panel per metric (accuracy and ROC AUC by
default) from MetricsEvent dicts, one line per (version, variant), and marks on every
panel the moments that explain the lines: concept and data drift alarms (DriftEvent),
new versions, promotions and rollbacks or rejections (ModelVersion). :func:`summary_rows`
gives the final figures per version and variant for a table at the end of the demo.

It renders with matplotlib's Agg canvas on a :class:`~matplotlib.figure.Figure` of its
own: no pyplot, no global backend switch, nothing kept between calls, so it is safe in a
worker thread and in tests. Timestamps may be datetimes (naive means UTC) or epoch
milliseconds, as the codec and the pydantic models give them.

Examples
--------
>>> t = datetime(2024, 1, 1, tzinfo=UTC)
>>> event = {"model": "fraud", "version": 1, "variant": "champion", "window_kind": "count",
...          "window_size": 1000.0, "samples": 5000, "metrics": {"accuracy": 0.98,
...          "roc_auc": 0.9512}, "emitted_at": t}
>>> [row.as_row() for row in summary_rows([event])]  # doctest: +NORMALIZE_WHITESPACE
[{'model': 'fraud', 'version': '1', 'variant': 'champion', 'stage': '-',
  'window': 'last 1000', 'samples': '5000', 'accuracy': '0.9800', 'ROC AUC': '0.9512'}]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib import colormaps, dates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from riverops.schemas.events import WindowKind

__all__ = ["METRIC_LABELS", "SummaryRow", "plot_rolling_metrics", "summary_rows"]

Record = Mapping[str, Any]
METRIC_LABELS = {"accuracy": "accuracy", "roc_auc": "ROC AUC", "log_loss": "log loss",
                 "f1": "F1", "precision": "precision", "recall": "recall"}  # fmt: skip
"""Axis and column titles of the metric names the monitor emits; others show as named."""

_VARIANT_ORDER = {"champion": 0, "challenger": 1, "shadow": 2, "online": 3}
_VARIANT_STYLE = {"champion": "-", "challenger": "--", "shadow": "-.", "online": ":"}
_SeriesKey = tuple[str, int, str, float]  # model, version, variant, window size


def _when(value: Any) -> datetime:
    """A UTC datetime from a datetime (naive means UTC) or epoch milliseconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)


def _label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def _window_text(kind: str, size: float) -> str:
    return f"last {size:g}" if kind == "count" else f"last {size:g} s"


def _pick_kind(events: Sequence[Record], window_kind: WindowKind | None) -> str:
    # both kinds measure the same outcomes: plot one, count windows when there are any
    if window_kind is not None:
        return window_kind
    kinds = {e["window_kind"] for e in events}
    return "count" if "count" in kinds or not kinds else "time"


def _series(events: Iterable[Record], window_kind: WindowKind | None) -> tuple[str, dict[_SeriesKey, list[Record]]]:
    """The events of one window kind, by (model, version, variant, window size), in time order,
    without repeats of unchanged figures."""
    events = list(events)
    kind = _pick_kind(events, window_kind)
    groups: dict[_SeriesKey, list[Record]] = defaultdict(list)
    for event in events:
        if event["window_kind"] == kind:
            key = (str(event["model"]), int(event["version"]), str(event["variant"]),
                   float(event["window_size"]))  # fmt: skip
            groups[key].append(event)
    for key, records in groups.items():
        records.sort(key=lambda e: _when(e["emitted_at"]))
        # a version out of service is still reported, unchanged: its line ends where it did
        groups[key] = [e for i, e in enumerate(records) if i == 0 or
                       (e["samples"], e["metrics"]) != (records[i - 1]["samples"], records[i - 1]["metrics"])]  # fmt: skip
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], _VARIANT_ORDER.get(kv[0][2], 9), kv[0][3]))
    return kind, dict(ordered)


def _stages(records: Iterable[Record]) -> dict[tuple[str, int], str]:
    """The registry fold: the last stage of each (model, version)."""
    last: dict[tuple[str, int], tuple[datetime, str]] = {}
    for record in records:
        key, at = (str(record["model"]), int(record["version"])), _when(record["changed_at"])
        if key not in last or at >= last[key][0]:
            last[key] = (at, str(record["stage"]))
    return {key: stage for key, (_, stage) in last.items()}


def plot_rolling_metrics(
    metrics_events: Iterable[Record],
    *,
    drift_events: Iterable[Record] = (),
    registry_records: Iterable[Record] = (),
    path: str | Path,
    title: str = "riverops: rolling metrics per model version",
    metrics: Sequence[str] = ("accuracy", "roc_auc"),
    window_kind: WindowKind | None = None,
    dpi: int = 110,
) -> Path:
    """Write a PNG of rolling ``metrics`` over time to ``path`` and return the path.

    One line per model version and variant (colour by version, line style by variant), of
    one window kind (``window_kind``, else count windows when present); vertical marks for
    drift alarms and registry changes on every panel. Empty inputs give a labelled, empty
    chart rather than an error, so the demo can always show its picture.
    """
    kind, groups = _series(metrics_events, window_kind)
    drifts = sorted(drift_events, key=lambda e: _when(e["detected_at"]))
    changes = sorted(registry_records, key=lambda r: _when(r["changed_at"]))
    models = {key[0] for key in groups}
    sizes = {key[3] for key in groups}

    figure = Figure(figsize=(12.0, 1.2 + 3.2 * max(len(metrics), 1)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg, whatever the backend
    axes = list(figure.subplots(max(len(metrics), 1), 1, sharex=True, squeeze=False)[:, 0])
    if len(sizes) == 1:
        unit = "labelled outcomes" if kind == "count" else "of label time"
        title += f"\nrolling over the {_window_text(kind, next(iter(sizes)))} {unit}"
    figure.suptitle(title, fontsize=12)
    palette = colormaps["tab10"]
    handles: dict[str, Line2D] = {}
    any_time = bool(drifts or changes)

    for ax, name in zip(axes, metrics or ("accuracy",), strict=False):
        plotted = False
        for (model, version, variant, size), records in groups.items():
            points = [(_when(e["emitted_at"]), float(e["metrics"][name])) for e in records
                      if name in e["metrics"]]  # fmt: skip
            if not points:
                continue
            label = f"v{version} {variant}"
            if len(models) > 1:
                label = f"{model} {label}"
            if len(sizes) > 1:
                label += f" ({_window_text(kind, size)})"
            (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], label=label,
                              color=palette((version - 1) % 10),
                              linestyle=_VARIANT_STYLE.get(variant, "-"), linewidth=1.6)  # fmt: skip
            handles.setdefault(label, line)
            plotted = any_time = True
        if not plotted:
            ax.text(0.5, 0.5, f"no {_label(name)} figures yet", transform=ax.transAxes,
                    ha="center", va="center", color="grey")  # fmt: skip
        ax.set_ylabel(_label(name))
        ax.grid(True, alpha=0.3)
    times = [_when(e["emitted_at"]) for records in groups.values() for e in records]
    _mark(axes, drifts, changes, handles, until=max(times) if times else None)

    bottom = axes[-1]
    if any_time:
        locator = dates.AutoDateLocator()  # type: ignore[no-untyped-call]  # untyped in matplotlib
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        bottom.set_xlabel("time (UTC)")
    else:
        bottom.set_xticks([])  # no times at all: 0..1 would read as 1970
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=9)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target


def _mark(axes: Sequence[Axes], drifts: Sequence[Record], changes: Sequence[Record],
          handles: dict[str, Line2D], until: datetime | None = None) -> None:  # fmt: skip
    """Vertical lines on every panel: drift alarms, new versions, promotions, rollbacks.

    Marks after ``until`` (the last metrics) are left out: an alarm raised by a chargeback
    label days after the stream would otherwise squeeze every line to the left.
    Learner snapshots are faint and unlabelled: they come every few thousand samples.
    """
    marks: list[tuple[datetime, str, dict[str, Any], str]] = []  # when, legend, style, note
    style: dict[str, Any]
    for event in drifts:
        concept = event.get("kind") == "concept"
        legend = f"concept drift ({event.get('detector', '?')})" if concept else "data drift"
        style = ({"color": "crimson", "linestyle": "--", "linewidth": 1.4} if concept
                 else {"color": "darkorange", "linestyle": ":", "linewidth": 1.0, "alpha": 0.6})  # fmt: skip
        marks.append((_when(event["detected_at"]), legend, style, ""))
    newest: dict[str, int] = {}
    for record in changes:
        model, version, stage = str(record["model"]), int(record["version"]), str(record["stage"])
        if stage == "champion" and version < newest.get(model, version):
            legend, style = "rollback", {"color": "purple", "linestyle": "-", "linewidth": 1.8}
        elif stage == "champion":
            legend, style = "promoted to champion", {"color": "green", "linestyle": "-", "linewidth": 1.8}
        elif stage == "rejected":
            legend, style = "rejected", {"color": "purple", "linestyle": "-.", "linewidth": 1.4}
        elif stage == "candidate" and record.get("changed_by") == "learner":
            legend, style = "learner snapshot", {"color": "silver", "linestyle": ":", "linewidth": 1.0}
            marks.append((_when(record["changed_at"]), legend, style, ""))
            newest[model] = max(newest.get(model, version), version)
            continue
        elif stage in ("candidate", "challenger", "shadow"):
            legend, style = "new version / retrain", {"color": "dimgrey", "linestyle": "-.", "linewidth": 1.2}
        else:
            continue  # archiving follows a promotion, already marked
        newest[model] = max(newest.get(model, version), version)
        marks.append((_when(record["changed_at"]), legend, style, f"v{version} {stage}"))
    for when, legend, style, note in marks:
        if until is not None and when > until:
            continue
        x = float(dates.date2num(when))  # type: ignore[no-untyped-call]  # untyped in matplotlib
        for ax in axes:
            line = ax.axvline(x, **style)
            handles.setdefault(legend, line)
        if note:
            axes[0].annotate(note, xy=(x, 1.0), xycoords=("data", "axes fraction"),
                             xytext=(2, -4), textcoords="offset points", rotation=90,
                             va="top", ha="left", fontsize=8, color=style["color"])  # fmt: skip


@dataclass(frozen=True)
class SummaryRow:
    """The last figures of one model version and variant, and the version's registry stage."""

    model: str
    version: int
    variant: str
    stage: str | None
    window: str
    samples: int
    metrics: Mapping[str, float]
    last_at: datetime

    def as_row(self, names: Sequence[str] = ("accuracy", "roc_auc")) -> dict[str, str]:
        """Column title to formatted cell, in table order: ready for a rich ``Table``."""
        row = {"model": self.model, "version": str(self.version), "variant": self.variant,
               "stage": self.stage or "-", "window": self.window, "samples": str(self.samples)}  # fmt: skip
        for name in names:
            value = self.metrics.get(name)
            row[_label(name)] = "-" if value is None else f"{value:.4f}"
        return row


def summary_rows(
    metrics_events: Iterable[Record],
    *,
    registry_records: Iterable[Record] = (),
    window_kind: WindowKind | None = None,
) -> list[SummaryRow]:
    """One row per model, version and variant (and window size) with its latest metrics.

    The window kind is chosen as in :func:`plot_rolling_metrics`; the stage is the last
    one the registry records give the version (None when it has none).
    """
    kind, groups = _series(metrics_events, window_kind)
    stages = _stages(registry_records)
    rows = []
    for (model, version, variant, size), records in groups.items():
        last = records[-1]
        rows.append(SummaryRow(
            model=model, version=version, variant=variant, stage=stages.get((model, version)),
            window=_window_text(kind, size), samples=int(last["samples"]),
            metrics={k: float(v) for k, v in last["metrics"].items()},
            last_at=_when(last["emitted_at"]),
        ))  # fmt: skip
    return rows
