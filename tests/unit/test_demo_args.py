"""``riverops demo`` refuses bad options up front, in the command's terms, with click's exit 2.

Each case runs the real command through click's CliRunner with the broker and the run
replaced by recorders: a refused option must leave both untouched (and create no output
directory), so a check that came only after the broker started fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from riverops.cli.main import cli
from riverops.demo import run as demo_run
from riverops.demo.run import DAY_EVENTS, DemoOptions, short_run_note
from riverops.schemas.errors import ConfigError


class Started(Exception):
    """Raised by the recorders: the command got past its checks."""


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    class Broker:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            calls.append("broker")
            raise Started("a broker was started")

    def run_demo(options: DemoOptions, **kwargs: Any) -> None:
        calls.append("run")
        raise Started("the demo ran")

    monkeypatch.setattr(demo_run, "EmbeddedBroker", Broker)
    monkeypatch.setattr(demo_run, "run_demo", run_demo)
    return calls


@pytest.mark.parametrize(("args", "named"), [
    (["--events", "-5"], "--events"),
    (["--events", "0"], "--events"),
    (["--rate", "0"], "--rate"),
    (["--rate", "-3"], "--rate"),
    (["--rate", "inf"], "--rate"),
    (["--duration", "0"], "--duration"),
    (["--drift-at", "0"], "--drift-at"),
    (["--events", "6000", "--drift-at", "6000"], "--drift-at"),
    (["--events", "6000", "--drift-at", "9000"], "--drift-at"),
    (["--events", "ten"], "--events"),
])  # fmt: skip
def test_bad_options_exit_2_naming_the_option_before_anything_starts(
    args: list[str], named: str, started: list[str], tmp_path: Path
) -> None:
    output = tmp_path / "out"
    done = CliRunner().invoke(cli, ["demo", "--output", str(output), "--no-live", *args])
    assert done.exit_code == 2, done.output
    assert named in done.output, done.output
    assert "drift_at" not in done.output and "events_per_second" not in done.output  # no internal names
    assert started == []
    assert not output.exists()


def test_good_options_reach_the_run(started: list[str], tmp_path: Path) -> None:
    """The recorders do see a valid invocation: the cases above are refused by the checks."""
    done = CliRunner().invoke(cli, ["demo", "--events", "6000", "--drift-at", "5999",
                                    "--output", str(tmp_path / "out")])  # fmt: skip
    assert isinstance(done.exception, Started) and started == ["run"]


def test_options_made_in_python_are_checked_the_same_way() -> None:
    with pytest.raises(ConfigError, match=r"--drift-at .* 1 to 5,999 .* got 7,000"):
        DemoOptions(events=6000, drift_at=7000)
    with pytest.raises(ConfigError, match=r"--events .*--rate"):
        DemoOptions(events=0, rate=0)  # every problem at once
    assert DemoOptions(events=6000).change_at == 2400
    assert DemoOptions(events=2).change_at == 1


def test_a_run_too_short_for_the_story_says_so_and_the_quick_start_run_does_not() -> None:
    note = short_run_note(DemoOptions(events=6000, rate=1500))
    assert note is not None and "3,600 transactions after the change" in note
    assert "(try --events 30000)" in note  # as typed on the command line
    assert short_run_note(DemoOptions(events=30_000)) is None
    assert short_run_note(DemoOptions(events=30_000, drift_at=25_000)) is not None


def test_the_roles_are_configured_through_their_settings_sections(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """The demo's role knobs travel in Settings, as in any deployment (no run-function
    keywords): a simulated day of feedback after an alarm, day-long data-drift windows."""
    monkeypatch.setattr(demo_run, "free_port", lambda: 9999)  # no socket in a unit test
    settings = demo_run.demo_settings(DemoOptions(output=tmp_path), bootstrap_servers="x:1", run_id="r")
    assert settings.retrainer.drift_min_samples == DAY_EVENTS
    assert settings.retrainer.window_events > DAY_EVENTS
    assert settings.retrainer.degradation_below is None
    drift = settings.monitor.data_drift
    assert (drift.reference_size, drift.window_size) == (DAY_EVENTS, DAY_EVENTS)
    assert settings.group_prefix == "riverops-demo-r" and settings.topic_prefix == "demo-r."
    assert settings.state_dir == tmp_path / "state" / "r"
