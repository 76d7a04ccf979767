"""The demo's recovery figure: pre-drift level, the newer champion's full window, events.

The demo measures it on ROC AUC (:func:`recovery_of`); :func:`recovery` is the accuracy
tuple the balanced-stream drift test reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from riverops.demo.summary import Recovery, recovery, recovery_line, recovery_of, story_reason

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def metric(second: int, version: int, samples: int, accuracy: float, auc: float = 0.5) -> dict[str, Any]:
    return {"model": "fraud", "version": version, "variant": "champion", "window_kind": "count",
            "window_size": 1000.0, "samples": samples,
            "metrics": {"accuracy": accuracy, "roc_auc": auc},
            "emitted_at": T0 + timedelta(seconds=second)}  # fmt: skip


def story() -> list[dict[str, Any]]:
    return [
        metric(1, 1, 2000, 0.98, 0.93), metric(2, 1, 3000, 0.97, 0.92),  # level: the last before
        metric(4, 1, 3500, 0.60, 0.31),  # the drift
        metric(5, 2, 300, 0.99, 0.99),  # the new champion, but a partial window
        metric(6, 1, 3600, 0.60, 0.28), metric(7, 2, 1000, 0.94, 0.85),  # full, not yet back
        metric(8, 2, 1400, 0.955, 0.905),
    ]


def test_recovery_needs_a_newer_champion_over_a_full_window() -> None:
    back = recovery_of(story(), T0 + timedelta(seconds=3))
    assert back == Recovery("roc_auc", level=0.92, old_version=1, low=0.28, version=2, value=0.905,
                            events=(3600 - 3000) + 1400,  # v1's outcomes after the drift + v2's
                            serving_from=3600 - 3000)  # v2's began after v1's last
    line = recovery_line(back)
    assert "v1's ROC AUC was 0.9200" in line and "fell to 0.2800" in line
    assert "v2, the new champion, was back to 0.9050" in line
    assert "served from 600 labelled events" in line and "complete at 2,000" in line


def test_the_accuracy_tuple() -> None:
    level, recovered, after = recovery(story(), T0 + timedelta(seconds=3)) or (0, 0, 0)
    assert (level, recovered, after) == (0.97, 0.955, 2000)


def test_no_recovery_is_none() -> None:
    events = [metric(1, 1, 3000, 0.97, 0.9), metric(4, 1, 3500, 0.6, 0.3), metric(5, 2, 1000, 0.9, 0.8)]
    assert recovery_of(events, T0 + timedelta(seconds=3)) is None
    assert recovery_of(events, T0) is None  # nothing before the drift
    assert recovery(events, T0 + timedelta(seconds=3)) is None
    assert "no newer champion came back" in recovery_line(None)


def test_log_loss_recovers_downwards() -> None:
    events = [metric(1, 1, 3000, 0.97), metric(4, 1, 3500, 0.6), metric(6, 2, 1000, 0.96)]
    for event, loss in zip(events, (0.10, 0.40, 0.11), strict=True):
        event["metrics"]["log_loss"] = loss
    back = recovery_of(events, T0 + timedelta(seconds=3), metric="log_loss")
    assert back is not None and (back.low, back.value, back.version) == (0.40, 0.11, 2)


def test_story_reasons_say_who_asked_for_the_retrain_and_why() -> None:
    assert story_reason("retrain (degradation by retrainer) on the last 8000 events: candidate "
                        "roc_auc 0.9 vs champion 0.3") == (
        "retrain requested by the retrainer after the champion's metric degraded, on the last "
        "8000 events: candidate roc_auc 0.9 vs champion 0.3")  # fmt: skip
    assert story_reason("retrain (nightly by alice) on the last 10 events") == (
        "retrain requested by alice (nightly), on the last 10 events")
    assert story_reason("initial champion") == "initial champion"
