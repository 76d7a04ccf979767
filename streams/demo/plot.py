"""The demo's picture and table: rolling metrics per model version, with drift and registry marks.

:func:`rolling_metrics_figure` draws one panel per metric (ROC AUC and accuracy by
default) from MetricsEvent dicts, one line per (version, variant), and marks on every
panel the moments that explain the lines: the stream's true change point, concept and
data drift alarms (DriftEvent), retrained versions, promotions, rejections and rollbacks
(ModelVersion). A version's line ends while the registry has it archived or rejected (the
monitor still reports its frozen or late-label figures), every shown version has a
colour of its own, and learner snapshots (candidates that never serve) are left out
unless asked for. :func:`plot_rolling_metrics` writes it as a PNG; :func:`summary_rows`
gives the final figures per version and variant, with each version's stage now.

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
  'window': 'last 1000', 'samples': '5000', 'ROC AUC': '0.9512', 'accuracy': '0.9800'}]
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

__all__ = ["METRIC_LABELS", "SummaryRow", "rolling_metrics_figure", "plot_rolling_metrics",
           "summary_rows", "version_colours"]  # fmt: skip

Record = Mapping[str, Any]
METRIC_LABELS = {"accuracy": "accuracy", "roc_auc": "ROC AUC", "log_loss": "log loss",
                 "f1": "F1", "precision": "precision", "recall": "recall"}  # fmt: skip
"""Axis and column titles of the metric names the monitor emits; others show as named."""

CHANGE_LEGEND = "fraud pattern changes (the stream's truth)"
_VARIANT_ORDER = {"champion": 0, "challenger": 1, "shadow": 2, "online": 3}
_VARIANT_STYLE = {"champion": "-", "challenger": "--", "shadow": "-.", "online": ":"}
_OUT_OF_SERVICE = ("archived", "rejected")
_SeriesKey = tuple[str, int, str, float]  # model, version, variant, window size
_Version = tuple[str, int]  # model, version


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


def _history(records: Iterable[Record]) -> dict[_Version, list[tuple[datetime, str]]]:
    """Each (model, version)'s stages in time order."""
    history: dict[_Version, list[tuple[datetime, str]]] = defaultdict(list)
    for record in records:
        history[(str(record["model"]), int(record["version"]))].append(
            (_when(record["changed_at"]), str(record["stage"])))
    for changes in history.values():
        changes.sort(key=lambda change: change[0])
    return dict(history)


def _stages(records: Iterable[Record]) -> dict[_Version, str]:
    """The registry fold: the last stage of each (model, version)."""
    return {key: changes[-1][1] for key, changes in _history(records).items()}


def _in_service(changes: Sequence[tuple[datetime, str]], at: datetime) -> bool:
    """Whether the version was neither archived nor rejected at ``at`` (by its last change
    before then; a version the registry does not know is taken as serving)."""
    stage = None
    for when, name in changes:
        if when > at:
            break
        stage = name
    return stage not in _OUT_OF_SERVICE


def version_colours(versions: Iterable[_Version]) -> dict[_Version, tuple[float, ...]]:
    """A colour per (model, version), none repeated: tab10 up to ten versions, tab20 up to
    twenty, else evenly spaced along a continuous colour map.

    >>> colours = version_colours([("fraud", v) for v in range(1, 12)])
    >>> len(set(colours.values())), colours[("fraud", 1)] != colours[("fraud", 11)]
    (11, True)
    """
    shown = sorted(set(versions))
    n = len(shown)
    if n <= 10:
        palette = colormaps["tab10"]
        picks = [palette(i) for i in range(n)]
    elif n <= 20:
        palette = colormaps["tab20"]
        picks = [palette(i) for i in range(n)]
    else:
        palette = colormaps["turbo"]
        picks = [palette(0.05 + 0.9 * i / (n - 1)) for i in range(n)]
    return {key: tuple(float(c) for c in colour) for key, colour in zip(shown, picks, strict=True)}


def plot_rolling_metrics(metrics_events: Iterable[Record], *, path: str | Path, dpi: int = 110,
                         **options: Any) -> Path:  # fmt: skip
    """Write :func:`rolling_metrics_figure` (``options`` are its keywords) as a PNG to
    ``path`` and return the path. Empty inputs give a labelled, empty chart rather than an
    error, so the demo can always show its picture."""
    figure = rolling_metrics_figure(metrics_events, dpi=dpi, **options)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target


def rolling_metrics_figure(
    metrics_events: Iterable[Record],
    *,
    drift_events: Iterable[Record] = (),
    registry_records: Iterable[Record] = (),
    change_at: datetime | None = None,
    title: str = "riverops: rolling metrics per model version",
    metrics: Sequence[str] = ("roc_auc", "accuracy"),
    window_kind: WindowKind | None = None,
    snapshots: bool = False,
    dpi: int = 110,
) -> Figure:
    """The figure of rolling ``metrics`` over time, one panel per metric.

    One line per model version and variant (a colour per version, a line style per
    variant) of one window kind (``window_kind``, else count windows when present),
    broken while the registry has the version archived or rejected; on every panel,
    vertical marks for ``change_at`` (when the stream's pattern really changed), drift
    alarms and registry changes (``snapshots``: learner snapshots too).
    """
    kind, groups = _series(metrics_events, window_kind)
    drifts = sorted(drift_events, key=lambda e: _when(e["detected_at"]))
    changes = sorted(registry_records, key=lambda r: _when(r["changed_at"]))
    history = _history(changes)
    models = {key[0] for key in groups}
    sizes = {key[3] for key in groups}
    colours = version_colours((model, version) for model, version, _, _ in groups)

    figure = Figure(figsize=(12.0, 2.0 + 3.2 * max(len(metrics), 1)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg, whatever the backend
    axes = list(figure.subplots(max(len(metrics), 1), 1, sharex=True, squeeze=False)[:, 0])
    if len(sizes) == 1:
        unit = "labelled outcomes" if kind == "count" else "of label time"
        title += f"\nrolling over the {_window_text(kind, next(iter(sizes)))} {unit} of each version"
    figure.suptitle(title, fontsize=12)
    handles: dict[str, Line2D] = {}
    times: list[datetime] = []

    for ax, name in zip(axes, metrics or ("accuracy",), strict=False):
        plotted = False
        for (model, version, variant, size), records in groups.items():
            serving = history.get((model, version), [])
            points = [(_when(e["emitted_at"]), float(e["metrics"][name])) for e in records
                      if name in e["metrics"] and _in_service(serving, _when(e["emitted_at"]))]  # fmt: skip
            if not points:
                continue
            label = f"v{version} {variant}"
            if len(models) > 1:
                label = f"{model} {label}"
            if len(sizes) > 1:
                label += f" ({_window_text(kind, size)})"
            xs: list[datetime] = []
            ys: list[float] = []
            for when, value in points:
                if xs and _left_between(serving, xs[-1], when):
                    xs.append(when)  # a gap where it was out and came back (a rollback)
                    ys.append(float("nan"))
                xs.append(when)
                ys.append(value)
            (line,) = ax.plot(xs, ys, label=label, color=colours[(model, version)],
                              linestyle=_VARIANT_STYLE.get(variant, "-"), linewidth=1.6)  # fmt: skip
            handles.setdefault(label, line)
            times += [p[0] for p in points]
            plotted = True
        if not plotted:
            ax.text(0.5, 0.5, f"no {_label(name)} figures yet", transform=ax.transAxes,
                    ha="center", va="center", color="grey")  # fmt: skip
        ax.set_ylabel(_label(name))
        ax.grid(True, alpha=0.3)
    marks = _marks(drifts, changes, change_at, snapshots=snapshots,
                   until=max(times) if times else None)  # fmt: skip
    _draw(axes, marks, handles)

    bottom = axes[-1]
    if times or marks:
        locator = dates.AutoDateLocator()  # type: ignore[no-untyped-call]  # untyped in matplotlib
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        bottom.set_xlabel("time (UTC)")
    else:
        bottom.set_xticks([])  # no times at all: 0..1 would read as 1970
    if handles:
        # under the panels: beside them a long title runs into it
        figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncols=min(4, len(handles)), fontsize=9)
    return figure


def _left_between(changes: Sequence[tuple[datetime, str]], start: datetime, end: datetime) -> bool:
    """Whether the version was out of service at some moment between two of its points."""
    return any(stage in _OUT_OF_SERVICE for when, stage in changes if start < when < end)


@dataclass(frozen=True)
class _Mark:
    when: datetime
    legend: str
    style: Mapping[str, Any]
    note: str = ""


def _marks(drifts: Sequence[Record], changes: Sequence[Record], change_at: datetime | None, *,
           snapshots: bool, until: datetime | None) -> list[_Mark]:  # fmt: skip
    """The vertical marks, in time order: the true change point, drift alarms, registry changes.

    Marks after ``until`` (the last metrics) are left out: an alarm raised by a chargeback
    label days after the stream would otherwise squeeze every line to the left. Archiving
    follows a promotion and is not marked of its own.
    """
    marks: list[_Mark] = []
    if change_at is not None:
        marks.append(_Mark(_when(change_at), CHANGE_LEGEND,
                           {"color": "black", "linestyle": "-", "linewidth": 2.4, "alpha": 0.55}))
    for event in drifts:
        concept = event.get("kind") == "concept"
        legend = f"concept drift alarm ({event.get('detector', '?')})" if concept else "data drift alarm"
        style = ({"color": "crimson", "linestyle": "--", "linewidth": 1.4} if concept
                 else {"color": "darkorange", "linestyle": ":", "linewidth": 1.0, "alpha": 0.5})  # fmt: skip
        marks.append(_Mark(_when(event["detected_at"]), legend, style))
    reigned: set[_Version] = set()  # a version champion once and again is a rollback
    for record in changes:
        model, version, stage = str(record["model"]), int(record["version"]), str(record["stage"])
        snapshot = stage == "candidate" and record.get("changed_by") == "learner"
        if stage == "champion" and (model, version) in reigned:
            legend, style = "rollback", {"color": "purple", "linestyle": "-", "linewidth": 1.8}
        elif stage == "champion":
            legend, style = "promoted to champion", {"color": "green", "linestyle": "-", "linewidth": 1.8}
        elif stage == "rejected":
            legend, style = "rejected", {"color": "purple", "linestyle": "-.", "linewidth": 1.4}
        elif snapshot:
            legend, style = "learner snapshot", {"color": "silver", "linestyle": ":", "linewidth": 0.8}
        elif stage in ("candidate", "challenger", "shadow"):
            legend, style = "retrained version", {"color": "dimgrey", "linestyle": "-.", "linewidth": 1.0}
        else:
            continue
        if stage == "champion":
            reigned.add((model, version))
        if snapshot and not snapshots:
            continue
        note = "" if snapshot else f"v{version} {stage}"
        marks.append(_Mark(_when(record["changed_at"]), legend, style, note))
    marks = [m for m in marks if until is None or m.when <= until or m.legend == CHANGE_LEGEND]
    return sorted(marks, key=lambda m: m.when)


def _notes(marks: Sequence[_Mark], gap: float) -> list[tuple[datetime, str, str]]:
    """The marks' notes with those less than ``gap`` seconds apart joined into one
    (when, text, colour), so close changes (a candidate and its promotion) do not print
    over each other."""
    joined: list[tuple[datetime, str, str]] = []
    last: datetime | None = None
    for mark in marks:
        if not mark.note:
            continue
        if joined and last is not None and (mark.when - last).total_seconds() < gap:
            when, text, colour = joined[-1]
            joined[-1] = (when, f"{text}, {mark.note}", colour)
        else:
            joined.append((mark.when, mark.note, str(mark.style["color"])))
        last = mark.when
    return joined


def _draw(axes: Sequence[Axes], marks: Sequence[_Mark], handles: dict[str, Line2D]) -> None:
    """Every mark as a vertical line on every panel, the notes on the top panel (those
    within 1/40 of the time axis of each other as one)."""
    for mark in marks:
        x = float(dates.date2num(mark.when))  # type: ignore[no-untyped-call]  # untyped in matplotlib
        for ax in axes:
            line = ax.axvline(x, label=mark.legend, **mark.style)
            handles.setdefault(mark.legend, line)
    if not marks:
        return
    lo, hi = axes[0].get_xlim()
    span = (hi - lo) * 86_400.0  # matplotlib dates are days
    for when, text, colour in _notes(marks, gap=max(span / 40.0, 1e-3)):
        x = float(dates.date2num(when))  # type: ignore[no-untyped-call]
        axes[0].annotate(text, xy=(x, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(2, -4), textcoords="offset points", rotation=90,
                         va="top", ha="left", fontsize=8, color=colour)  # fmt: skip


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

    def as_row(self, names: Sequence[str] = ("roc_auc", "accuracy")) -> dict[str, str]:
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

    The window kind is chosen as in :func:`rolling_metrics_figure`; the stage is the last
    one the registry records give the version (None when it has none), so a version that
    served as champion and was replaced reads "archived".
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
