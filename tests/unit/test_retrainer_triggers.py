"""The retrainer's pure core: triggers, cooldown, waiting requests, probation. No broker, no
clock: every call is given its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from riverops.models.registry import Registry
from riverops.roles.retrainer.policy import PromotionPolicy
from riverops.roles.retrainer.triggers import CATCH_UP_SECONDS, RetrainerCore, Rollback, Trigger
from riverops.schemas.events import Artifact
from riverops.sections import PolicySettings, RetrainerSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ART = Artifact(inline=b"x", sha256="0" * 64, signature="1" * 64, size=1)


def core(**knobs: Any) -> RetrainerCore:
    return RetrainerCore(RetrainerSettings(**{"cooldown_seconds": 0.0, **knobs}))


def alarm(model: str = "fraud", *, statistic: float = 0.30, threshold: float | None = 0.05,
          kind: str = "concept", variant: str = "champion", at: datetime = T0,
          signal: str | None = None) -> dict[str, Any]:
    """A DriftEvent dict; with ``signal`` None, as a monitor from before signals wrote it."""
    event = {"model": model, "version": 1, "variant": variant, "kind": kind, "detector": "ADWIN",
             "statistic": statistic, "threshold": threshold, "feature": None, "samples": 100,
             "detected_at": at}
    return event if signal is None else {**event, "signal": signal}


def metrics(version: int, value: float, samples: int = 1_000, *, metric: str = "roc_auc",
            variant: str = "champion", window_kind: str = "count") -> dict[str, Any]:
    return {"model": "fraud", "version": version, "variant": variant, "window_kind": window_kind,
            "window_size": 1000.0, "samples": samples, "metrics": {metric: value}, "emitted_at": T0}


def request(model: str = "fraud", **params: Any) -> dict[str, Any]:
    return {"request_id": "r", "model": model, "reason": "manual", "requested_by": "t",
            "requested_at": T0, "params": params}


def feedback(i: int, *, at: datetime, model: str = "fraud", partition: int = 0) -> tuple[dict[str, Any], Any]:
    record = {"event_id": f"e{i}", "model": model, "event_time": at, "features": {"x": 1.0},
              "label": True, "label_time": at, "predictions": []}
    return record, ("feedback", partition, i)


def champion_registry(*, promoted: bool = False) -> Registry:
    """fraud v1 champion (promoted with roc_auc 0.9); with ``promoted``, v2 (0.95) replaced it."""
    registry = Registry()
    registry.apply_all(registry.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                            stage="champion", metrics={"roc_auc": 0.9},
                                            changed_by="t", reason="first"))
    if promoted:
        registry.apply_all(registry.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                                metrics={"roc_auc": 0.95}, changed_by="t", reason="r"))
        registry.apply_all(registry.promote("fraud", 2, by="t", reason="better"))
    return registry


def never(_ends: Any) -> bool:
    return False


# --- drift ------------------------------------------------------------------------------


def test_a_concept_alarm_of_the_champion_asks_for_a_retrain_from_its_time() -> None:
    trigger = core().on_drift(alarm(statistic=0.4, threshold=0.1), now=0.0)
    assert trigger == Trigger("fraud", "drift", "monitor", {
        "detector": "ADWIN", "error_after": 0.4, "since_ms": T0.timestamp() * 1000.0})


@pytest.mark.parametrize(("statistic", "threshold", "fires"), [
    (0.119, 0.1, False),  # a rise of 0.019 < min_error_rise 0.02
    (0.121, 0.1, True),
    (0.03, None, True),  # no error before: the rise is the error after
    (0.01, None, False),
])
def test_min_error_rise(statistic: float, threshold: float | None, fires: bool) -> None:
    trigger = core(min_error_rise=0.02).on_drift(alarm(statistic=statistic, threshold=threshold), now=0.0)
    assert (trigger is not None) == fires


@pytest.mark.parametrize(("signal", "fires"), [
    (None, False),  # a monitor from before signals: its alarms are on the 0/1 error
    ("error", False),
    ("positive_error", True),  # the minority class's error, 1% -> 2.9%: judged by the monitor
    ("negative_error", True),
    ("log_loss", True),
])
def test_min_error_rise_holds_the_error_signal_only(signal: str | None, fires: bool) -> None:
    event = alarm(statistic=0.029, threshold=0.01, signal=signal)
    trigger = core(min_error_rise=0.02).on_drift(event, now=0.0)
    assert (trigger is not None) == fires
    if trigger is not None:
        assert trigger.params["signal"] == signal


def test_a_published_alarm_of_the_monitor_asks_for_a_retrain() -> None:
    """End to end through the pure cores: a champion whose positive class is missed after a
    change of pattern (2% positives, the overall error up by under 0.02) is retrained."""
    from riverops.roles.monitor import MonitorCore
    from riverops.schemas.events import DriftEvent

    monitor, retrainer = MonitorCore(data_drift=None), core(min_error_rise=0.02)
    records = []
    for i in range(8000):
        positive = i % 50 == 0
        caught = positive and (i < 6000 and i % 150 != 0)  # recall 2/3, then 0
        p = 0.9 if caught else (0.02 if i < 6000 or not positive else 0.01)
        records.append({"event_id": f"e{i}", "model": "fraud", "entity_id": "c", "event_time": T0,
                        "features": {}, "label": positive, "label_time": T0 + timedelta(seconds=i),
                        "predictions": [{"version": 1, "variant": "champion", "prediction": p >= 0.5,
                                         "scores": {"True": p, "False": 1 - p}}]})
    drift = monitor.update(records)
    assert drift and drift[0]["samples"] > 6000
    error_before = sum(r["label"] != (r["predictions"][0]["prediction"]) for r in records[:6000]) / 6000
    error_after = sum(r["label"] != (r["predictions"][0]["prediction"]) for r in records[6000:]) / 2000
    assert error_after - error_before < 0.02  # the overall error barely moves
    event = DriftEvent.from_avro(drift[0]).to_avro()
    trigger = retrainer.on_drift(event, now=0.0)
    assert trigger is not None and trigger.params["signal"] == drift[0]["signal"]


def test_data_drift_and_alarms_of_other_variants_ask_for_nothing() -> None:
    retrainer = core()
    assert retrainer.on_drift(alarm(kind="data"), now=0.0) is None
    assert retrainer.on_drift(alarm(variant="challenger"), now=0.0) is None


# --- cooldown and one waiting request per model -----------------------------------------


def test_cooldown_spaces_the_automatic_requests_of_one_model() -> None:
    retrainer = core(cooldown_seconds=20.0)
    assert retrainer.on_drift(alarm(), now=100.0) is not None
    assert retrainer.on_drift(alarm(), now=119.0) is None
    assert retrainer.on_drift(alarm("other"), now=119.0) is not None  # per model
    assert retrainer.on_drift(alarm(), now=120.0) is not None


def test_no_trigger_while_a_request_of_the_model_waits() -> None:
    retrainer = core()
    retrainer.on_request(request(), ends={("feedback", 0): 10}, now=0.0)
    assert retrainer.on_drift(alarm(), now=1.0) is None
    assert retrainer.on_drift(alarm("other"), now=1.0) is not None
    assert retrainer.ready(now=2.0, at_end=lambda ends: True) == [request()]
    assert retrainer.on_drift(alarm(), now=3.0) is not None  # it ran: the next may come


# --- waiting ------------------------------------------------------------------------------


def test_a_request_waits_until_the_feedback_consumer_reached_the_ends_it_saw() -> None:
    retrainer = core()
    ends = {("feedback", 0): 10, ("feedback", 1): 4}
    retrainer.on_request(request(), ends=ends, now=0.0)
    seen: list[Any] = []

    def behind(asked: Any) -> bool:
        seen.append(asked)
        return False

    assert retrainer.ready(now=1.0, at_end=behind) == []
    assert seen == [ends]
    assert retrainer.ready(now=2.0, at_end=lambda e: True) == [request()]
    assert retrainer.waiting == []


def test_a_request_runs_after_the_catch_up_wait_even_if_the_consumer_lags() -> None:
    retrainer = core()
    retrainer.on_request(request(), ends={("feedback", 0): 10}, now=0.0)
    assert retrainer.ready(now=CATCH_UP_SECONDS, at_end=never) == []
    assert retrainer.ready(now=CATCH_UP_SECONDS + 0.1, at_end=never) == [request()]


def test_a_drift_request_waits_for_drift_min_samples_feedback_after_the_alarm() -> None:
    retrainer = core(drift_min_samples=3, drift_wait_seconds=60.0)
    since = T0.timestamp() * 1000.0
    for i in range(5):  # before the alarm: the old concept, not counted
        retrainer.add_feedback(*feedback(i, at=T0 - timedelta(seconds=5 - i)))
    retrainer.on_request(request(since_ms=since), ends={}, now=0.0)
    assert retrainer.after_alarm("fraud", since) == 0
    for i in range(5, 7):
        retrainer.add_feedback(*feedback(i, at=T0 + timedelta(seconds=i)))
    assert retrainer.ready(now=30.0, at_end=lambda e: True) == []  # caught up is not enough
    retrainer.add_feedback(*feedback(7, at=T0 + timedelta(seconds=7)))
    assert retrainer.after_alarm("fraud", since) == 3
    assert retrainer.ready(now=31.0, at_end=never) == [request(since_ms=since)]


def test_a_drift_request_stops_waiting_after_drift_wait_seconds() -> None:
    retrainer = core(drift_min_samples=1_000, drift_wait_seconds=60.0)
    retrainer.on_request(request(since_ms=T0.timestamp() * 1000.0), ends={}, now=0.0)
    assert retrainer.ready(now=60.0, at_end=lambda e: True) == []
    # past the wait it trains on the whole window (the catch-up wait is long over)
    assert len(retrainer.ready(now=60.5, at_end=never)) == 1


def test_a_drift_request_without_a_wait_only_waits_for_the_window_to_catch_up() -> None:
    retrainer = core(drift_min_samples=1_000, drift_wait_seconds=0.0)
    retrainer.on_request(request(since_ms=T0.timestamp() * 1000.0), ends={}, now=0.0)
    assert retrainer.ready(now=1.0, at_end=never) == []
    assert len(retrainer.ready(now=1.0, at_end=lambda e: True)) == 1


def test_a_waiting_request_holds_back_later_ones_of_its_model_only() -> None:
    retrainer = core(drift_min_samples=10)
    retrainer.on_request(request("fraud", since_ms=T0.timestamp() * 1000.0), ends={}, now=0.0)
    retrainer.on_request(request("fraud"), ends={}, now=0.0)
    retrainer.on_request(request("other"), ends={}, now=0.0)
    assert [r["model"] for r in retrainer.ready(now=1.0, at_end=lambda e: True)] == ["other"]
    assert [r["model"] for r in retrainer.waiting] == ["fraud", "fraud"]


def test_waiting_requests_hold_the_commit_of_their_partition_back() -> None:
    retrainer = core()
    retrainer.on_request(request("a"), ends={("feedback", 0): 5}, now=0.0, source=("retrain", 0, 7))
    retrainer.on_request(request("b"), ends={}, now=0.0, source=("retrain", 0, 9))
    retrainer.on_request(request("c"), ends={}, now=0.0, source=("retrain", 1, 3))
    assert retrainer.holding() == {("retrain", 0): 7, ("retrain", 1): 3}
    retrainer.ready(now=1.0, at_end=lambda e: e == {})  # b and c ran, a waits
    assert retrainer.holding() == {("retrain", 0): 7}
    retrainer.forget([("retrain", 0)])  # revoked: the new owner reads it again
    assert retrainer.waiting == [] and retrainer.holding() == {}


# --- the window -------------------------------------------------------------------------


def test_windows_hold_the_last_window_events_per_model_and_forget_revoked_partitions() -> None:
    retrainer = core(window_events=10)
    for i in range(25):
        retrainer.add_feedback(*feedback(i, at=T0, partition=i % 2))
    retrainer.add_feedback(*feedback(99, at=T0, model="other"))
    assert [s[2] for _, s in retrainer.window("fraud")] == list(range(15, 25))
    assert len(retrainer.window("other")) == 1
    retrainer.forget([("feedback", 1)])
    assert [s[2] for _, s in retrainer.window("fraud")] == [16, 18, 20, 22, 24]
    assert len(retrainer.window("other")) == 1  # read from partition 0


def test_a_request_may_ask_for_a_smaller_window() -> None:
    retrainer = core(window_events=10, window_seconds=3600.0)
    for i in range(10):
        retrainer.add_feedback(*feedback(i, at=T0))
    window, seconds = retrainer.training_window(request(window_events=4.0, window_seconds=60.0))
    assert [s[2] for _, s in window] == [6, 7, 8, 9] and seconds == 60.0
    window, seconds = retrainer.training_window(request())
    assert len(window) == 10 and seconds == 3600.0


# --- degradation and schedule -----------------------------------------------------------


def test_degradation_below_asks_for_a_retrain_of_the_champion() -> None:
    retrainer = core(degradation_below=0.85)
    registry = champion_registry()
    assert retrainer.on_metrics(metrics(1, 0.90), registry, now=0.0) == []
    assert retrainer.on_metrics(metrics(1, 0.80, samples=499), registry, now=0.0) == []  # < min_samples
    assert retrainer.on_metrics(metrics(1, 0.80, variant="challenger"), registry, now=0.0) == []
    assert retrainer.on_metrics(metrics(1, 0.80, window_kind="time"), registry, now=0.0) == []
    assert retrainer.on_metrics(metrics(3, 0.80), registry, now=0.0) == []  # not the champion
    assert retrainer.on_metrics(metrics(1, 0.80), registry, now=0.0) == [
        Trigger("fraud", "degradation", "retrainer", {"metric": "roc_auc", "value": 0.80})]


def test_without_degradation_below_a_low_metric_asks_for_nothing() -> None:
    assert core().on_metrics(metrics(1, 0.10), champion_registry(), now=0.0) == []


def test_degradation_of_a_lower_is_better_metric_is_a_rise() -> None:
    retrainer = RetrainerCore(RetrainerSettings(cooldown_seconds=0.0, degradation_below=2.0,
                                                policy=PolicySettings(metric="mae")))
    registry = champion_registry()
    assert retrainer.on_metrics(metrics(1, 1.5, metric="mae"), registry, now=0.0) == []
    (trigger,) = retrainer.on_metrics(metrics(1, 2.5, metric="mae"), registry, now=0.0)
    assert isinstance(trigger, Trigger) and trigger.reason == "degradation"


def test_the_schedule_asks_for_every_model_each_schedule_seconds() -> None:
    retrainer = core(schedule_seconds=60.0)
    assert retrainer.on_schedule(["a", "b"], now=1000.0) == []  # starts the clock
    assert retrainer.on_schedule(["a", "b"], now=1059.0) == []
    assert [t.model for t in retrainer.on_schedule(["a", "b"], now=1060.0)] == ["a", "b"]
    assert all(t.reason == "schedule" for t in retrainer.on_schedule(["a"], now=1120.0))
    assert core().on_schedule(["a"], now=0.0) == core().on_schedule(["a"], now=10**9) == []


# --- probation --------------------------------------------------------------------------


def test_a_new_champion_under_the_previous_ones_live_level_is_rolled_back() -> None:
    policy = PolicySettings(rollback_drop=0.05, rollback_min_samples=100, rollback_patience=3)
    retrainer = RetrainerCore(RetrainerSettings(policy=policy))
    registry = champion_registry()
    assert retrainer.on_metrics(metrics(1, 0.97), registry, now=0.0) == []  # v1's live level
    registry = champion_registry(promoted=True)
    assert retrainer.on_metrics(metrics(2, 0.80, samples=200), registry, now=1.0) == []
    assert retrainer.on_metrics(metrics(2, 0.80, samples=400), registry, now=2.0) == []
    (rollback,) = retrainer.on_metrics(metrics(2, 0.80, samples=600), registry, now=3.0)
    assert isinstance(rollback, Rollback) and (rollback.model, rollback.version) == ("fraud", 2)
    assert rollback.decision.action == "rollback" and "baseline 0.97" in rollback.decision.reason
    assert retrainer.on_metrics(metrics(2, 0.80, samples=800), registry, now=4.0) == []  # once


def test_probation_judges_by_the_promotion_metrics_when_no_live_level_is_known() -> None:
    policy = PolicySettings(rollback_drop=0.05, rollback_min_samples=100, rollback_patience=1)
    retrainer = RetrainerCore(RetrainerSettings(policy=policy))
    registry = champion_registry(promoted=True)
    assert retrainer.on_metrics(metrics(2, 0.92), registry, now=0.0) == []  # 0.95 - 0.92 <= 0.05
    (rollback,) = retrainer.on_metrics(metrics(2, 0.85), registry, now=1.0)
    assert isinstance(rollback, Rollback) and "baseline 0.95" in rollback.decision.reason


def test_a_first_champion_and_a_restored_one_are_not_on_probation() -> None:
    policy = PolicySettings(rollback_min_samples=1, rollback_patience=1)
    retrainer = RetrainerCore(RetrainerSettings(policy=policy))
    assert retrainer.on_metrics(metrics(1, 0.10), champion_registry(), now=0.0) == []
    registry = champion_registry(promoted=True)
    registry.apply_all(registry.rollback("fraud", by="t", reason="r"))  # v1 reigns again
    assert retrainer.on_metrics(metrics(1, 0.10), registry, now=1.0) == []


def test_the_policy_comes_from_the_settings() -> None:
    section = RetrainerSettings(policy=PolicySettings(metric="accuracy", margin=0.02, min_samples=300))
    policy = RetrainerCore(section).policy
    assert (policy.metric, policy.margin, policy.min_samples) == ("accuracy", 0.02, 300)
    assert dict(policy.guards) == {"accuracy": 0.02}  # code only: the defaults
    given = PromotionPolicy(metric="mae")
    assert RetrainerCore(section, policy=given).policy is given
