"""The quick start's short demo, end to end on the real broker: the counts add up and the
drift story is told (an alarm after the change, a retrained champion, the ROC AUC back)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from riverops.demo.run import DemoOptions, run_demo, short_run_note

from ..conftest import ENGINE

pytestmark = [
    pytest.mark.tansu,
    # `make demo` runs on the embedded broker: the Tansu pass runs this test, and the Kafka
    # pass does not spend a second minute on it (the loop on Apache Kafka: test_worker_all)
    pytest.mark.skipif(ENGINE == "kafka", reason="make demo runs on the embedded broker: the Tansu pass runs it"),
]

QUICK_START = DemoOptions(events=30_000, rate=1_000)  # docs/quickstart.md's short run


@pytest.mark.timeout(600)
def test_the_short_demo_tells_the_drift_story(bootstrap_servers: str, tmp_path: Path) -> None:
    assert short_run_note(QUICK_START) is None  # long enough, by the demo's own measure
    options = DemoOptions(events=QUICK_START.events, rate=QUICK_START.rate, duration=300,
                          output=tmp_path, bootstrap_servers=bootstrap_servers, live=False)
    console = Console(record=True, width=120)
    result = run_demo(options, console=console)
    printed = console.export_text()
    assert not result.worker_failed, printed
    assert result.drained, printed  # every served outcome reached the monitor (a challenger's too)
    assert result.events == 30_000
    assert result.labels == 30_000  # every label replayed, chargebacks included
    assert result.predictions == 30_000  # one champion prediction per event, no shadow here
    assert result.feedback == 30_000  # every labelled event joined once
    assert result.dead_letters == 0
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the story: a retrained version replaced v1 and brought the ROC AUC back
    assert result.promotions >= 2, printed  # the initial champion and a retrained one
    back = result.recovery
    assert back is not None, printed
    assert back.old_version == 1 and back.version > 1 and back.metric == "roc_auc"
    assert back.low < back.level - 0.2, printed  # the change did hurt v1
    assert f"v{back.version}, the new champion" in printed
    assert "archived" in printed  # v1's stage now, not the role it served in
