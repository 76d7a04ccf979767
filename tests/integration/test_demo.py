"""A short demo, end to end on the real broker: the summary's counts add up."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from riverops.demo.run import DemoOptions, run_demo

pytestmark = pytest.mark.tansu  # also in the Tansu smoke pass

def test_short_demo_runs_the_whole_loop(bootstrap_servers: str, tmp_path: Path) -> None:
    options = DemoOptions(events=6_000, rate=1_500, drift_at=2_500, warmup=2_000, duration=120,
                          output=tmp_path, bootstrap_servers=bootstrap_servers, live=False)
    result = run_demo(options, console=Console(record=True, width=120))
    assert result.events == 6_000
    assert result.labels == 6_000  # every label replayed, chargebacks included
    assert result.predictions == 6_000  # one champion prediction per event, no shadow here
    assert result.feedback == 6_000  # every labelled event joined once
    assert result.dead_letters == 0
    assert result.versions >= 1 and result.promotions >= 1
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(m["variant"] == "champion" for m in result.metrics)
