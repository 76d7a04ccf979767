"""The demo's closing tables: final metrics per version, the registry's story, the recovery.

What the demo prints once the stream is over, from the records it reads back (MetricsEvent,
DriftEvent and ModelVersion dicts). The figures lead with ROC AUC: on a stream with 1-4%
fraud a model that calls everything legitimate scores 96-99% accuracy, so accuracy alone
says little; recall (at the scorer's decision, a score of 0.5) and log loss come next when
the monitor reports them.

Examples
--------
>>> story_reason("retrain (drift by monitor) on the 3000 events after the alarm")
"retrain requested after the monitor's concept-drift alarm, on the 3000 events after the alarm"
>>> story_reason("replaced by v3: retrain (degradation by retrainer) on the last 500 events")
"replaced by v3: retrain requested by the retrainer after the champion's metric degraded, on the last 500 events"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table

from riverops.demo.plot import METRIC_LABELS, summary_rows
from riverops.roles.retrainer.role import request_story

__all__ = ["Recovery", "recovery_of", "recovery", "metrics_table", "story_table", "story_reason",
           "recovery_line", "drift_line", "SUMMARY_METRICS"]  # fmt: skip

Record = Mapping[str, Any]
SUMMARY_METRICS = ("roc_auc", "recall", "log_loss", "accuracy")
"""The final table's metrics, in order: the ranking first, accuracy last."""

_RETRAIN = re.compile(r"retrain \((?P<reason>[^()]*) by (?P<by>[^()\s]+)\) on ")


def story_reason(reason: str) -> str:
    """A registry reason written by a retrainer before 0.2 (``retrain (REASON by WHO) on
    ...``) said as the retrainer says it now (:func:`request_story`). Other text is kept."""

    def say(match: re.Match[str]) -> str:
        return f"{request_story(match['reason'], match['by'])}, on "

    return _RETRAIN.sub(say, reason)


@dataclass(frozen=True)
class Recovery:
    """How the champion's ``metric`` came back after the drift.

    ``level`` is ``old_version``'s figure just before the drift, ``low`` the worst figure a
    champion showed after it, ``value`` the first figure of ``version`` (a newer champion,
    over a full window of its own outcomes) within the tolerance of ``level``, reached
    ``events`` labelled events after the drift. ``serving_from`` is where that champion's
    outcomes began, in labelled events after the drift: the recovery as the stream saw it
    (every labelled event from there on was scored by a model that the window shows is
    back), where ``events`` adds the window it took to show it.
    """

    metric: str
    level: float
    old_version: int
    low: float
    version: int
    value: float
    events: int
    serving_from: int


def _champion_windows(metrics: Sequence[Record], metric: str) -> list[Record]:
    return sorted((e for e in metrics if e["variant"] == "champion" and e["window_kind"] == "count"
                   and metric in e["metrics"]), key=lambda e: e["emitted_at"])  # fmt: skip


def recovery_of(metrics: Sequence[Record], drift_time: datetime, *, metric: str = "roc_auc",
                tolerance: float = 0.02) -> Recovery | None:  # fmt: skip
    """The first newer champion's return to within ``tolerance`` of the pre-drift ``metric``.

    The serving champion's count-window figure just before ``drift_time`` is the level;
    recovery is the first later MetricsEvent of a *newer* champion version, over a full
    count window of its own outcomes, within ``tolerance`` of it (for log loss, lower is
    better: within means at most ``level + tolerance``); events are counted from the
    champions' sample counts (each labelled event has one champion outcome), and that
    version's began where its own count leaves off. None when nothing was before the drift
    or nothing came back.
    """
    lower_is_better = metric == "log_loss"
    champion = _champion_windows(metrics, metric)
    before = [e for e in champion if e["emitted_at"] <= drift_time]
    if not before:
        return None
    level, old_version = float(before[-1]["metrics"][metric]), int(before[-1]["version"])
    seen = {int(e["version"]): int(e["samples"]) for e in before}
    baseline = sum(seen.values())
    low = level
    for e in champion:
        if e["emitted_at"] <= drift_time:
            continue
        value = float(e["metrics"][metric])
        seen[int(e["version"])] = int(e["samples"])
        low = max(low, value) if lower_is_better else min(low, value)
        back = value <= level + tolerance if lower_is_better else value >= level - tolerance
        if int(e["version"]) > old_version and e["samples"] >= e["window_size"] and back:
            events = sum(seen.values()) - baseline
            return Recovery(metric, level, old_version, low, int(e["version"]), value, events,
                            max(events - int(e["samples"]), 0))  # fmt: skip
    return None


def recovery(metrics: Sequence[Record], drift_time: datetime, *, tolerance: float = 0.02
             ) -> tuple[float, float, int] | None:  # fmt: skip
    """(pre-drift accuracy, recovered accuracy, labelled events after the drift it took):
    :func:`recovery_of` on accuracy, as a tuple (for balanced streams, where accuracy is a
    fair figure)."""
    back = recovery_of(metrics, drift_time, metric="accuracy", tolerance=tolerance)
    return (back.level, back.value, back.events) if back else None


def recovery_line(back: Recovery | None, *, metric: str = "roc_auc", tolerance: float = 0.02) -> str:
    """One sentence on the recovery, naming the versions."""
    name = METRIC_LABELS.get(metric, metric)
    if back is None:
        return (f"recovery: no newer champion came back within {tolerance:g} of the pre-drift "
                f"champion's {name} over a full window")
    return (f"recovery: v{back.old_version}'s {name} was {back.level:.4f} before the drift and "
            f"fell to {back.low:.4f}; v{back.version}, the new champion, was back to "
            f"{back.value:.4f} (within {tolerance:g}) over its first full window: it served from "
            f"{back.serving_from:,} labelled events after the drift (the window complete at {back.events:,})")


def metrics_table(metrics: Sequence[Record], versions: Sequence[Record]) -> Table:
    """The last count-window figures of each version and variant, with its stage now.

    "served as" is the variant the figures were earned in; "stage now" is where the
    registry has the version at the end (a champion that was replaced reads archived).
    "outcomes" counts every labelled outcome the version had in that variant, the metrics
    cover only the last window of them.
    """
    rows = summary_rows(metrics, registry_records=versions, window_kind="count")
    windows = sorted({r.window for r in rows})
    over = (f"over each version's {windows[0]} labelled outcomes" if len(windows) == 1
            else "over each version's window")
    table = Table(title=f"final rolling metrics, {over}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    columns = ["version", "served as", "stage now", "outcomes"]
    if len(windows) > 1:
        columns.append("window")
    names = [m for m in SUMMARY_METRICS if any(m in r.metrics for r in rows)]
    columns += [METRIC_LABELS.get(m, m) for m in names]
    for column in columns:
        table.add_column(column, justify="left" if column in ("served as", "stage now") else "right",
                         overflow="fold", min_width=len(column))
    for row in rows:
        cells = [f"v{row.version}", row.variant, row.stage or "-", f"{row.samples:,}"]
        if len(windows) > 1:
            cells.append(row.window)
        cells += [f"{row.metrics[m]:.4f}" if m in row.metrics else "" for m in names]
        table.add_row(*cells)
    if rows:
        table.caption = ("outcomes: every labelled outcome of the version in that role. ROC AUC "
                         "leads: with 1-4% fraud, calling everything legitimate scores 96-99% "
                         "accuracy; recall is the share of fraud the scorer's decision (a score "
                         "of 0.5) caught")
    return table


def story_table(versions: Sequence[Record]) -> Table:
    """Every registry change in order, with its reason in full (wrapped, not cut)."""
    table = Table(title="the registry's story (every change, in order)", title_justify="left")
    table.add_column("when", no_wrap=True)
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("by", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    for record in versions:
        table.add_row(record["changed_at"].strftime("%H:%M:%S"), f"v{record['version']}",
                      record["stage"], record["changed_by"], story_reason(record["reason"]))  # fmt: skip
    return table


def drift_line(drift: Sequence[Record], change_at: datetime | None = None) -> str:
    """The alarms in one sentence: how many of each kind, and the first concept alarm
    against the stream's true change point."""
    concept = sorted(d["detected_at"] for d in drift if d["kind"] == "concept")
    line = (f"drift alarms: {len(concept)} concept, "
            f"{sum(d['kind'] == 'data' for d in drift)} data")
    if concept:
        line += f"; the first concept alarm at {concept[0]:%H:%M:%S}"
        if change_at is not None:
            lag = (concept[0] - change_at).total_seconds()
            line += f", {abs(lag):.1f} s {'after' if lag >= 0 else 'before'} the change of pattern"
    return line
