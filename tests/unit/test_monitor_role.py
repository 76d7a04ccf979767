"""MonitorRole without Kafka: every refused feedback goes to the dead letters through the
runtime, the task comes from the champion, metrics and gauges leave every emit_seconds,
and the core is built from ``settings.monitor``.

The context and the messages are stand-ins with only what the role reads of them; the
Kafka path is tests/integration/test_feedback_loop.py and test_metrics_endpoint.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from riverops.modelops import register_trained
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.monitor import DataDriftOptions, MonitorCore, MonitorRole, MonitorStats
from riverops.runtime import Input, Outputs
from riverops.schemas.errors import ConfigError
from riverops.sections import DataDriftSettings, MonitorSettings
from riverops.settings import Settings
from riverops.telemetry import Telemetry

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TOPIC = "riverops.feedback"


class _Context:
    """The part of riverops.runtime.Context the monitor uses."""

    def __init__(self, registry: Registry, telemetry: Telemetry) -> None:
        self.registry, self.telemetry = registry, telemetry


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(signing_key="k" * 32, artifact_dir=tmp_path / "artifacts",
                    monitor=MonitorSettings(emit_seconds=5.0, data_drift=DataDriftSettings(enabled=False)))


def _feedback(i: int, label: Any, *, x: float = 1.0) -> Input:
    record = {"event_id": f"e{i}", "model": "fraud", "entity_id": "c", "event_time": T0,
              "features": {"x": x}, "label": label, "label_time": T0 + timedelta(seconds=30),
              "predictions": [{"version": 1, "variant": "champion", "prediction": True,
                               "scores": {"True": 0.9, "False": 0.1}}]}
    return Input("feedback", Message(topic=TOPIC, partition=0, offset=i), record)


def _role(settings: Settings) -> tuple[MonitorRole, CollectorRegistry]:
    registry = Registry()
    registry.apply_all(register_trained(settings, registry, "fraud", get_spec("logreg").build(),
                                        spec_name="logreg", stage="champion", by="test",
                                        reason="the champion"))
    metrics = CollectorRegistry()
    role = MonitorRole(settings, stats=MonitorStats())
    role.start(_Context(registry, Telemetry(metrics, role="monitor")))  # type: ignore[arg-type]
    return role, metrics


def test_refused_feedback_is_rejected_with_its_message(settings: Settings) -> None:
    role, _ = _role(settings)
    assert role.core.tasks == {"fraud": "binary"}  # from the champion, before any label
    good, nan, maybe = _feedback(0, True), _feedback(1, True, x=math.nan), _feedback(2, "maybe")
    out = Outputs()
    role.handle([good, nan, maybe], out)
    assert [(source, type(error).__name__) for source, error in out.rejected] == [
        (nan.message, "InvalidEventError"), (maybe.message, "InvalidEventError")]
    assert "nan" in str(out.rejected[0][1]) and "binary" in str(out.rejected[1][1])
    assert [row.samples for row in role.core.status()] == [1]
    assert (role.stats.batches, role.stats.feedback) == (1, 3)


def test_metrics_and_gauges_leave_every_emit_seconds(settings: Settings) -> None:
    role, metrics = _role(settings)
    role.handle([_feedback(i, True) for i in range(4)], Outputs())
    started = role._last_emit
    early = Outputs()
    role.tick(started + 1.0, early)
    assert "metrics" not in early.records
    due = Outputs()
    role.tick(started + 5.0, due)
    # the time window ends at wall-clock time: 2024's labels are out of it
    assert [e["window_kind"] for e in due.records["metrics"]] == ["count"]
    assert role.stats.metrics_events == 1 and role.stats.status[0].samples == 4
    labels = {"role": "monitor", "model": "fraud", "version": "1", "variant": "champion"}
    assert metrics.get_sample_value("riverops_model_samples", labels) == 4
    assert metrics.get_sample_value("riverops_label_delay_seconds_count",
                                    {"role": "monitor", "model": "fraud"}) == 4


def test_the_core_follows_the_monitor_section() -> None:
    section = MonitorSettings(window_size=20, time_window=60.0, detector="PageHinkley", dedupe_size=7,
                              data_drift=DataDriftSettings(reference_size=50, window_size=40, every=10,
                                                           psi_threshold=0.3))
    core = MonitorCore.from_settings(section)
    assert (core.window_size, core.time_window, core.detector, core.dedupe_size) == (
        20, 60.0, "PageHinkley", 7)
    assert core.data_drift == DataDriftOptions(reference_size=50, window_size=40, every=10,
                                               psi_threshold=0.3)
    off = MonitorSettings(data_drift=DataDriftSettings(enabled=False))
    assert MonitorCore.from_settings(off).data_drift is None
    assert MonitorCore.from_settings(MonitorSettings()).signals == {
        "binary": ("positive_error", "log_loss"), "multiclass": ("error", "log_loss"),
        "regression": ("error",)}
    chosen = MonitorCore.from_settings(MonitorSettings(
        binary_signals=("log_loss", "error"), multiclass_signals=("error",), min_relative_rise=0.5,
        rise_z=2.0))
    assert (chosen.signals["binary"], chosen.signals["multiclass"]) == (("error", "log_loss"), ("error",))
    assert (chosen.min_relative_rise, chosen.rise_z) == (0.5, 2.0)


def test_the_signal_settings_are_checked_when_read() -> None:
    with pytest.raises(ValidationError):
        MonitorSettings(multiclass_signals=("positive_error",))  # no positive class
    with pytest.raises(ValidationError):
        MonitorSettings(binary_signals=())
    with pytest.raises(ConfigError):  # DDM takes 0/1 errors only
        MonitorCore.from_settings(MonitorSettings(detector="DDM"))
    ddm = MonitorSettings(detector="DDM", binary_signals=("positive_error",), multiclass_signals=("error",))
    assert MonitorCore.from_settings(ddm).signals["binary"] == ("positive_error",)
