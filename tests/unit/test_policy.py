"""Promotion policy: every decision branch, metric directions, rollback, registry records."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from riverops.models.artifacts import ArtifactStore, pack
from riverops.models.registry import Registry
from riverops.roles.retrainer.frame import feedback_frame
from riverops.roles.retrainer.policy import (
    HIGHER_IS_BETTER,
    Decision,
    Probation,
    PromotionPolicy,
    apply,
)
from riverops.roles.retrainer.training import retrain
from riverops.schemas.errors import ConfigError, RegistryError
from riverops.schemas.events import Artifact, Lineage, ModelVersion

ART = Artifact(inline=b"x", sha256="0" * 64, signature="1" * 64, size=1)


def auc_policy(**options: Any) -> PromotionPolicy:
    return PromotionPolicy(**{"metric": "roc_auc", "margin": 0.25, "min_samples": 100,
                              "challenger_share": 0.2, **options})


# --- options ---------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"metric": "auc"}, {"margin": -0.1}, {"margin": float("nan")}, {"challenger_share": 0.0},
    {"challenger_share": 1.0}, {"rollback_drop": -1.0}, {"min_samples": -1},
    {"rollback_min_samples": -1}, {"margin_kind": "percent"}, {"guards": {"acc": 0.1}},
    {"guards": {"accuracy": -0.1}}, {"rollback_patience": 0}, {"rollback_watch_samples": 0},
])
def test_bad_options_fail_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        PromotionPolicy(**options)


def test_metric_directions() -> None:
    assert PromotionPolicy().higher_is_better and PromotionPolicy(metric="r2").higher_is_better
    for metric in ("mae", "rmse", "log_loss"):
        assert not PromotionPolicy(metric=metric).higher_is_better
    assert set(HIGHER_IS_BETTER) >= {"accuracy", "roc_auc", "log_loss", "mae", "rmse", "r2"}


# --- decide ----------------------------------------------------------------------------


@pytest.mark.parametrize("champion", [None, {}])
def test_no_champion_promotes(champion: dict[str, float] | None) -> None:
    decision = auc_policy().decide({"roc_auc": 0.1}, champion, holdout_samples=1)
    assert decision == Decision("promote", "no champion to compare with")


def test_clearly_better_on_enough_samples_promotes() -> None:
    decision = auc_policy().decide({"roc_auc": 0.875}, {"roc_auc": 0.5}, holdout_samples=100)
    assert decision.action == "promote" and decision.share is None
    assert "0.875" in decision.reason and "better by 0.375" in decision.reason


def test_a_gain_of_exactly_the_margin_promotes() -> None:
    decision = auc_policy().decide({"roc_auc": 0.75}, {"roc_auc": 0.5}, holdout_samples=100)
    assert decision.action == "promote"


def test_better_on_too_few_samples_is_a_challenger_with_the_share() -> None:
    decision = auc_policy().decide({"roc_auc": 0.875}, {"roc_auc": 0.5}, holdout_samples=99)
    assert (decision.action, decision.share) == ("challenger", 0.2)
    assert "min_samples=100" in decision.reason


@pytest.mark.parametrize("candidate", [0.74, 0.5, 0.26, 0.25])
def test_within_the_margin_is_a_challenger(candidate: float) -> None:
    decision = auc_policy().decide({"roc_auc": candidate}, {"roc_auc": 0.5}, holdout_samples=1000)
    assert (decision.action, decision.share) == ("challenger", 0.2)
    assert "within margin" in decision.reason


@pytest.mark.parametrize("samples", [1, 1000])
def test_clearly_worse_is_rejected_whatever_the_samples(samples: int) -> None:
    decision = auc_policy().decide({"roc_auc": 0.24}, {"roc_auc": 0.5}, holdout_samples=samples)
    assert decision.action == "reject" and "worse by 0.26" in decision.reason


def test_missing_metric_values() -> None:
    policy = auc_policy()
    assert policy.decide({"roc_auc": 0.9}, {"accuracy": 0.9}, 1000).action == "challenger"
    assert policy.decide({"accuracy": 0.9}, {"roc_auc": 0.5}, 1000).action == "reject"
    assert policy.decide({"roc_auc": float("nan")}, {"roc_auc": 0.5}, 1000).action == "reject"


@pytest.mark.parametrize(("candidate", "action"), [
    (1.0, "promote"),      # 0.5 lower MAE
    (1.45, "challenger"),  # 0.05 lower: within 0.1
    (1.55, "challenger"),  # 0.05 higher: within 0.1
    (1.75, "reject"),      # 0.25 higher
])
def test_lower_is_better_metrics_flip_the_comparison(candidate: float, action: str) -> None:
    policy = PromotionPolicy(metric="mae", margin=0.1, min_samples=10)
    assert policy.decide({"mae": candidate}, {"mae": 1.5}, holdout_samples=10).action == action


def test_log_loss_is_lower_is_better() -> None:
    policy = PromotionPolicy(metric="log_loss", margin=0.01, min_samples=0)
    assert policy.decide({"log_loss": 0.2}, {"log_loss": 0.3}, 0).action == "promote"
    assert policy.decide({"log_loss": 0.4}, {"log_loss": 0.3}, 0).action == "reject"


@pytest.mark.parametrize(("candidate", "action"), [(95.0, "promote"), (97.0, "challenger"),
                                                   (105.0, "reject")])
def test_a_relative_margin_scales_with_the_champion(candidate: float, action: str) -> None:
    policy = PromotionPolicy(metric="mae", margin=0.04, min_samples=0, margin_kind="relative")
    assert policy.decide({"mae": candidate}, {"mae": 100.0}, 10).action == action


# --- rollback --------------------------------------------------------------------------


def test_rollback_when_the_live_metric_drops_past_the_baseline() -> None:
    policy = PromotionPolicy(rollback_drop=0.05, rollback_min_samples=500)
    decision = policy.check_rollback(live_metric=0.84, baseline_metric=0.9, samples=500)
    assert decision is not None and decision.action == "rollback"
    assert "0.84" in decision.reason and "500 samples" in decision.reason


@pytest.mark.parametrize(("live", "samples"), [
    (0.86, 10_000),  # dropped 0.04: within rollback_drop
    (0.95, 10_000),  # better
    (0.5, 499),      # far worse, but too few live samples
    (float("nan"), 10_000),
    (None, 10_000),
])
def test_no_rollback(live: float | None, samples: int) -> None:
    policy = PromotionPolicy(rollback_drop=0.05, rollback_min_samples=500)
    assert policy.check_rollback(live_metric=live, baseline_metric=0.9, samples=samples) is None


def test_rollback_for_a_lower_is_better_metric_is_a_rise() -> None:
    policy = PromotionPolicy(metric="mae", rollback_drop=0.5, rollback_min_samples=1)
    assert policy.check_rollback(live_metric=2.6, baseline_metric=2.0, samples=1) is not None
    assert policy.check_rollback(live_metric=2.4, baseline_metric=2.0, samples=1) is None
    assert policy.check_rollback(live_metric=0.1, baseline_metric=2.0, samples=1) is None
    relative = PromotionPolicy(metric="mae", rollback_drop=0.1, rollback_min_samples=1,
                               margin_kind="relative")
    assert relative.check_rollback(live_metric=2.3, baseline_metric=2.0, samples=1) is not None
    assert relative.check_rollback(live_metric=2.1, baseline_metric=2.0, samples=1) is None


# --- guards ----------------------------------------------------------------------------


def test_a_candidate_that_ranks_well_but_flags_everything_is_rejected() -> None:
    """The demo's failure: a better ROC AUC with an accuracy of 0.15 must not win."""
    decision = auc_policy(margin=0.01).decide({"roc_auc": 0.93, "accuracy": 0.15},
                                              {"roc_auc": 0.90, "accuracy": 0.97}, 800)
    assert decision.action == "reject"
    assert "accuracy 0.15 vs champion 0.97" in decision.reason


@pytest.mark.parametrize(("accuracy", "action"), [(0.951, "promote"), (0.949, "reject")])
def test_the_accuracy_guard_tolerates_its_margin(accuracy: float, action: str) -> None:
    policy = auc_policy(margin=0.01, guards={"accuracy": 0.02})
    decision = policy.decide({"roc_auc": 0.95, "accuracy": accuracy},
                             {"roc_auc": 0.90, "accuracy": 0.97}, 800)
    assert decision.action == action


def test_a_lower_is_better_guard_and_no_guards() -> None:
    candidate, champion = {"roc_auc": 0.95, "log_loss": 0.9}, {"roc_auc": 0.90, "log_loss": 0.2}
    assert auc_policy(margin=0.01, guards={"log_loss": 0.1}).decide(
        candidate, champion, 800).action == "reject"
    assert auc_policy(margin=0.01, guards={}).decide(candidate, champion, 800).action == "promote"


def test_a_guard_missing_on_either_side_is_skipped() -> None:
    decision = auc_policy(margin=0.01).decide({"roc_auc": 0.95}, {"roc_auc": 0.90, "accuracy": 0.9}, 800)
    assert decision.action == "promote"


# --- probation -------------------------------------------------------------------------


def test_probation_needs_patience_consecutive_breaches() -> None:
    policy = PromotionPolicy(rollback_drop=0.05, rollback_min_samples=100, rollback_patience=3)
    watch = Probation(baseline=0.9)
    assert [watch.observe(policy, live_metric=v, samples=1000) for v in (0.8, 0.8, 0.88, 0.8, 0.8)] == [None] * 5
    decision = watch.observe(policy, live_metric=0.8, samples=1000)
    assert decision is not None and decision.action == "rollback" and "3 checks in a row" in decision.reason
    assert watch.observe(policy, live_metric=0.1, samples=1000) is None  # decided once


def test_probation_ends_after_the_watch() -> None:
    policy = PromotionPolicy(rollback_min_samples=1, rollback_patience=1, rollback_watch_samples=5000)
    watch = Probation(baseline=0.9)
    assert watch.observe(policy, live_metric=0.95, samples=5001) is None
    assert watch.observe(policy, live_metric=0.1, samples=5002) is None


def test_probation_without_a_baseline_never_rolls_back() -> None:
    policy = PromotionPolicy(rollback_min_samples=1, rollback_patience=1)
    assert Probation(baseline=None).observe(policy, live_metric=0.0, samples=10) is None


# --- registry records ------------------------------------------------------------------


def registry_with_candidate(champion: bool = True) -> Registry:
    registry = Registry()
    if champion:
        registry.apply_all(registry.new_version(
            "fraud", spec="logreg", task="binary", artifact=ART, stage="champion",
            metrics={"roc_auc": 0.9}, changed_by="t", reason="first"))
    registry.apply_all(registry.new_version(
        "fraud", spec="logreg", task="binary", artifact=ART, metrics={"roc_auc": 0.95},
        changed_by="retrainer", reason="retrain r1"))
    return registry


def test_apply_promote_archives_the_champion_and_carries_the_reason() -> None:
    registry = registry_with_candidate()
    decision = auc_policy().decide({"roc_auc": 0.95}, {"roc_auc": 0.5}, 1000)
    records = apply(decision, registry, "fraud", 2, by="retrainer", reason="retrain r1 (drift)")
    assert [(r.version, r.stage) for r in records] == [(1, "archived"), (2, "champion")]
    assert records[1].reason == f"retrain r1 (drift): {decision.reason}"
    assert decision.reason in records[0].reason
    assert all(r.changed_by == "retrainer" for r in records)
    registry.apply_all(records)
    champion = registry.champion("fraud")
    assert champion is not None and champion.version == 2
    assert champion.metrics == {"roc_auc": 0.95}  # what it was promoted with


def test_apply_promote_without_a_champion() -> None:
    registry = registry_with_candidate(champion=False)
    records = apply(auc_policy().decide({"roc_auc": 0.6}, None, 1), registry, "fraud", 1,
                    by="retrainer", reason="")
    assert [(r.version, r.stage, r.reason) for r in records] == [
        (1, "champion", "no champion to compare with")]


def test_apply_challenger_sets_the_share() -> None:
    registry = registry_with_candidate()
    decision = auc_policy().decide({"roc_auc": 0.9}, {"roc_auc": 0.9}, 1000)
    (record,) = apply(decision, registry, "fraud", 2, by="retrainer", reason="r1")
    assert (record.stage, record.share) == ("challenger", 0.2)
    assert record.reason.startswith("r1: ") and "within margin" in record.reason
    registry.apply(record)
    assert [v.version for v in registry.plan("fraud").challengers] == [2]


def test_apply_reject_is_a_rejected_record_that_cannot_be_promoted() -> None:
    registry = registry_with_candidate()
    decision = auc_policy().decide({"roc_auc": 0.1}, {"roc_auc": 0.9}, 1000)
    (record,) = apply(decision, registry, "fraud", 2, by="retrainer", reason="r1")
    assert (record.stage, record.reason) == ("rejected", f"r1: {decision.reason}")
    registry.apply(record)
    with pytest.raises(RegistryError):
        registry.promote("fraud", 2, by="ops", reason="try anyway")


def test_apply_rollback_restores_the_previous_champion() -> None:
    registry = registry_with_candidate()
    registry.apply_all(registry.promote("fraud", 2, by="retrainer", reason="better"))
    policy = PromotionPolicy()
    champion = registry.champion("fraud")
    assert champion is not None
    baseline = policy.baseline(champion)
    decision = policy.check_rollback(live_metric=0.7, baseline_metric=baseline, samples=800)
    assert decision is not None
    records = apply(decision, registry, "fraud", 2, by="monitor", reason="live check")
    assert [(r.version, r.stage) for r in records] == [(2, "rejected"), (1, "champion")]
    assert all(decision.reason in r.reason for r in records)
    registry.apply_all(records)
    restored = registry.champion("fraud")
    assert restored is not None and restored.version == 1
    with pytest.raises(RegistryError, match="stale rollback"):  # v2 is no longer the champion
        apply(decision, registry, "fraud", 2, by="monitor", reason="again")


def test_records_survive_validation_and_carry_lineage(tmp_path: Path) -> None:
    """End to end without Kafka: retrain, register with lineage, decide, apply."""
    rng = random.Random(0)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    recs = []
    for i in range(1500):
        x = {"a": rng.gauss(0, 1)}
        recs.append({"event_id": f"e{i}", "event_time": t0 + timedelta(seconds=i),
                     "features": x, "label": x["a"] + rng.gauss(0, 0.5) > 0,
                     "label_time": t0, "predictions": []})
    sources = [("feedback", 0, i) for i in range(1500)]
    result = retrain(feedback_frame(recs, sources=sources), spec_name="logreg", seed=1)
    registry = Registry()
    artifact = pack(result.model, key=b"k", store=ArtifactStore(tmp_path))
    added = registry.new_version(
        "fraud", spec=result.spec, task=result.task, artifact=artifact, params=result.params,
        seed=result.seed, metrics=result.metrics, changed_by="retrainer", reason="retrain r1",
        lineage=Lineage(training_data=result.training_data, samples=result.samples))
    registry.apply_all(added)
    policy = PromotionPolicy(min_samples=300)
    decision = policy.decide(result.candidate_metrics, result.champion_metrics,
                             result.holdout_samples)
    (record,) = apply(decision, registry, "fraud", added[-1].version, by="retrainer",
                      reason="retrain r1")
    assert record.stage == "champion" and record.lineage.samples == 1200
    assert ModelVersion.model_validate(record.model_dump()) == record
