"""The demo plot and summary table: a real PNG from any input, the final figures per version.

The figure's own lines are inspected (``rolling_metrics_figure``): a colour per shown
version, lines that end while their version is archived, the stream's true change point,
notes that do not print over each other, learner snapshots left out.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from matplotlib import dates

from riverops.demo.plot import (
    CHANGE_LEGEND,
    plot_rolling_metrics,
    rolling_metrics_figure,
    summary_rows,
)
from riverops.schemas.events import DriftEvent, MetricsEvent

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def metrics_event(
    minute: float, version: int, variant: str, accuracy: float, auc: float, *,
    samples: int = 100, kind: str = "count", size: float = 1000.0,
) -> dict[str, Any]:  # fmt: skip
    return MetricsEvent(
        model="fraud", version=version, variant=variant, window_kind=kind, window_size=size,
        samples=samples, metrics={"accuracy": accuracy, "roc_auc": auc, "log_loss": 0.1},
        emitted_at=T0 + timedelta(minutes=minute),
    ).to_avro()  # fmt: skip


def drift_event(minute: float, kind: str = "concept") -> dict[str, Any]:
    return DriftEvent(
        model="fraud", version=1, variant="champion", kind=kind,
        detector="ADWIN" if kind == "concept" else "PSI", statistic=0.3,
        feature=None if kind == "concept" else "amount", samples=10,
        detected_at=T0 + timedelta(minutes=minute),
    ).to_avro()  # fmt: skip


def registry(minute: float, version: int, stage: str, by: str = "retrainer") -> dict[str, Any]:
    # the fields the plot reads; full ModelVersion records work the same
    return {"model": "fraud", "version": version, "stage": stage, "reason": "test",
            "changed_by": by, "changed_at": T0 + timedelta(minutes=minute)}  # fmt: skip


def story() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """v1 degrades at minute 30, v2 is trained, shadowed, promoted; v1's online twin adapts."""
    events = []
    for minute in range(60):
        v1 = 0.985 if minute < 30 else 0.96
        events.append(metrics_event(minute, 1, "champion" if minute < 45 else "shadow", v1,
                                    0.95 if minute < 30 else 0.3, samples=100 * minute))
        events.append(metrics_event(minute, 1, "online", v1 + 0.005, 0.9, samples=100 * minute))
        if minute >= 36:
            events.append(metrics_event(minute, 2, "challenger" if minute < 45 else "champion",
                                        0.982, 0.97, samples=100 * (minute - 36)))
        events.append(metrics_event(minute, 1, "champion", v1, 0.5, kind="time", size=300.0))
    drifts = [drift_event(32), drift_event(33, "data"), drift_event(34, "data")]
    changes = [registry(0, 1, "champion"), registry(35, 2, "candidate"), registry(36, 2, "challenger"),
               registry(45, 2, "champion"), registry(45, 1, "archived"), registry(50, 3, "challenger"),
               registry(55, 3, "rejected"), registry(58, 1, "champion"), registry(58, 2, "archived")]  # fmt: skip
    return events, drifts, changes


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_writes_a_png_of_the_whole_story(tmp_path: Path) -> None:
    events, drifts, changes = story()
    target = tmp_path / "nested" / "metrics.png"
    out = plot_rolling_metrics(events, drift_events=drifts, registry_records=changes, path=target,
                               title="fraud: drift, retrain, promotion")  # fmt: skip
    assert out == target
    assert_png(out)


@pytest.mark.parametrize("window_kind", [None, "count", "time"])
def test_empty_and_partial_inputs_still_give_a_png(tmp_path: Path, window_kind: Any) -> None:
    events, drifts, changes = story()
    assert_png(plot_rolling_metrics([], path=tmp_path / "empty.png", window_kind=window_kind))
    assert_png(plot_rolling_metrics([], drift_events=drifts, registry_records=changes,
                                    path=tmp_path / "marks.png"))  # fmt: skip
    assert_png(plot_rolling_metrics(events[:1], path=tmp_path / "one.png", metrics=("f1",),
                                    window_kind=window_kind))  # fmt: skip
    assert summary_rows([]) == []


def test_accepts_epoch_millis_and_naive_datetimes(tmp_path: Path) -> None:
    events, drifts, changes = story()
    for event in events:
        event["emitted_at"] = int(event["emitted_at"].timestamp() * 1000)
    for change in changes:
        change["changed_at"] = change["changed_at"].replace(tzinfo=None)
    assert_png(plot_rolling_metrics(events, drift_events=drifts, registry_records=changes,
                                    path=str(tmp_path / "millis.png")))  # fmt: skip


def test_never_imports_pyplot(tmp_path: Path) -> None:
    """pyplot would pick a global backend; a fresh interpreter shows it stays unloaded."""
    code = (
        "import sys; from riverops.demo import plot; "
        f"plot.plot_rolling_metrics([], path={str(tmp_path / 'x.png')!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_summary_has_the_last_figures_and_stage_per_version_and_variant() -> None:
    events, _, changes = story()
    rows = summary_rows(events, registry_records=changes)
    keys = [(r.version, r.variant) for r in rows]
    assert keys == [(1, "champion"), (1, "shadow"), (1, "online"), (2, "champion"), (2, "challenger")]
    by_key = {(r.version, r.variant): r for r in rows}
    assert by_key[1, "champion"].metrics["roc_auc"] == 0.3
    assert by_key[1, "champion"].stage == "champion"  # rolled back to at minute 58
    assert by_key[2, "champion"].stage == "archived"
    assert by_key[2, "champion"].samples == 100 * 23
    assert all(r.window == "last 1000" for r in rows)
    assert by_key[1, "online"].as_row(("accuracy", "roc_auc", "nope")) == {
        "model": "fraud", "version": "1", "variant": "online", "stage": "champion",
        "window": "last 1000", "samples": "5900", "accuracy": "0.9650", "ROC AUC": "0.9000",
        "nope": "-",
    }  # fmt: skip
    timed = summary_rows(events, window_kind="time")
    assert [(r.version, r.variant, r.window) for r in timed] == [(1, "champion", "last 300 s")]


def test_last_at_is_the_last_change_not_the_last_repeat() -> None:
    events = [metrics_event(m, 1, "champion", 0.9, 0.8, samples=5 if m >= 3 else m) for m in range(10)]
    (row,) = summary_rows(events)
    assert row.last_at == T0 + timedelta(minutes=3) and row.samples == 5


def _lines(figure: Any, panel: int = 0) -> dict[str, Any]:
    return {line.get_label(): line for line in figure.axes[panel].get_lines()}


def _minutes(line: Any) -> list[float]:
    """The line's x values as minutes after T0 (NaN gaps left out)."""
    t0 = float(dates.date2num(T0))  # type: ignore[no-untyped-call]  # untyped in matplotlib
    days = [float(x if isinstance(x, float) else dates.date2num(x))  # type: ignore[no-untyped-call]
            for x in line.get_xdata()]
    return [round((x - t0) * 1440.0, 3) for x, y in zip(days, line.get_ydata(), strict=True)
            if y == y]  # fmt: skip


def test_every_shown_version_has_a_colour_of_its_own() -> None:
    """Version numbers run past ten (learner snapshots take numbers): v1 and v11 once
    shared tab10's first colour."""
    events = [metrics_event(m, v, "champion", 0.9, 0.8 + m / 100, samples=m + 1)
              for v in (1, 5, 11, 12) for m in range(3)]  # fmt: skip
    lines = _lines(rolling_metrics_figure(events))
    colours = {label: line.get_color() for label, line in lines.items() if label.startswith("v")}
    assert set(colours) == {"v1 champion", "v5 champion", "v11 champion", "v12 champion"}
    assert len({tuple(c) for c in colours.values()}) == 4
    many = [metrics_event(m, v, "champion", 0.9, 0.8 + m / 100, samples=m + 1)
            for v in range(1, 26) for m in range(2)]  # fmt: skip
    shown = [line.get_color() for line in _lines(rolling_metrics_figure(many)).values()]
    assert len({tuple(c) for c in shown}) == 25


def test_a_line_ends_while_its_version_is_archived() -> None:
    """v2 replaces v1 at minute 45 and is rolled back at 58: no v1 point from 45 to 58,
    then v1 resumes after a gap; v2 stops at 58. The monitor kept reporting both."""
    events = [metrics_event(m, 1, "champion", 0.98, 0.9, samples=100 * m + 1) for m in range(60)]
    events += [metrics_event(m, 2, "champion", 0.97, 0.95, samples=100 * m) for m in range(36, 60)]
    changes = [registry(0, 1, "champion"), registry(45, 2, "champion"), registry(45, 1, "archived"),
               registry(58, 1, "champion"), registry(58, 2, "archived")]  # fmt: skip
    lines = _lines(rolling_metrics_figure(events, registry_records=changes))
    assert _minutes(lines["v1 champion"]) == [*range(45), 58, 59]
    assert sum(y != y for y in lines["v1 champion"].get_ydata()) == 1  # the gap is drawn as one
    assert _minutes(lines["v2 champion"]) == list(range(36, 58))
    unaware = _lines(rolling_metrics_figure(events))  # without the registry, every point shows
    assert _minutes(unaware["v1 champion"]) == list(range(60))
    summary = {r.version: r for r in summary_rows(events, registry_records=changes)}
    assert summary[2].stage == "archived" and summary[2].samples == 5900  # the table keeps the last


def test_marks_the_true_change_point_and_leaves_out_snapshots() -> None:
    events, drifts, changes = story()
    changes += [registry(20, 4, "candidate", by="learner"), registry(40, 5, "candidate", by="learner")]
    change = T0 + timedelta(minutes=30)
    figure = rolling_metrics_figure(events, drift_events=drifts, registry_records=changes, change_at=change)
    for panel in range(2):
        lines = _lines(figure, panel)
        assert _minutes(lines[CHANGE_LEGEND]) == [30.0, 30.0]
        assert "learner snapshot" not in lines
        assert "concept drift alarm (ADWIN)" in lines and "promoted to champion" in lines
    notes = [t.get_text() for t in figure.axes[0].texts]
    assert not any("v4" in n or "v5" in n for n in notes)
    # a higher-numbered snapshot before it does not make v2's promotion read as a rollback
    marked = {label: sorted(m for line in figure.axes[0].get_lines() if line.get_label() == label
                            for m in _minutes(line)[:1])
              for label in ("promoted to champion", "rollback")}  # fmt: skip
    assert marked == {"promoted to champion": [0.0, 45.0], "rollback": [58.0]}
    shown = rolling_metrics_figure(events, registry_records=changes, snapshots=True)
    assert "learner snapshot" in _lines(shown)


def test_close_registry_notes_are_joined_not_printed_over_each_other() -> None:
    """v2 candidate at minute 35 and challenger at 36 are under 1/40 of the axis apart: one note;
    the promotion at 45 is far enough for a note of its own."""
    events, drifts, changes = story()
    figure = rolling_metrics_figure(events, drift_events=drifts, registry_records=changes)
    notes = [t.get_text() for t in figure.axes[0].texts]
    assert "v2 candidate, v2 challenger" in notes
    assert "v2 champion" in notes
    assert len(figure.axes[1].texts) == 0  # notes only on the top panel
