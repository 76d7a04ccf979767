"""The demo's recovery figure: pre-drift level, the newer champion's full window, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from riverops.demo.run import recovery

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def metric(second: int, version: int, samples: int, accuracy: float) -> dict[str, Any]:
    return {"model": "fraud", "version": version, "variant": "champion", "window_kind": "count",
            "window_size": 1000.0, "samples": samples, "metrics": {"accuracy": accuracy},
            "emitted_at": T0 + timedelta(seconds=second)}


def test_recovery_needs_a_newer_champion_over_a_full_window() -> None:
    events = [
        metric(1, 1, 2000, 0.98), metric(2, 1, 3000, 0.97),  # level: the last before the drift
        metric(4, 1, 3500, 0.60),  # the drift
        metric(5, 2, 300, 0.99),  # the new champion, but a partial window
        metric(6, 1, 3600, 0.60), metric(7, 2, 1000, 0.94),  # full, not yet within 2 points
        metric(8, 2, 1400, 0.955),
    ]
    level, recovered, after = recovery(events, T0 + timedelta(seconds=3)) or (0, 0, 0)
    assert (level, recovered) == (0.97, 0.955)
    assert after == (3600 - 3000) + 1400  # v1's outcomes after the drift + v2's


def test_no_recovery_is_none() -> None:
    events = [metric(1, 1, 3000, 0.97), metric(4, 1, 3500, 0.6), metric(5, 2, 1000, 0.9)]
    assert recovery(events, T0 + timedelta(seconds=3)) is None
    assert recovery(events, T0) is None  # nothing before the drift
