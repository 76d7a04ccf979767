"""Fast recovery after a drift alarm: the staged waiting of the core, the bootstrap bound,
the policy's promotion on a small holdout, and the judgement on real River models and a
real drifting stream (SINE1 -> SINE2). No broker."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from river.datasets import synth

from riverops.models.batch import learn_in_order
from riverops.models.specs import get_spec
from riverops.roles.retrainer.frame import feedback_frame
from riverops.roles.retrainer.policy import PromotionPolicy
from riverops.roles.retrainer.recovery import gain_bound, judge, level_before, recovery_candidate
from riverops.roles.retrainer.training import retrain
from riverops.roles.retrainer.triggers import RetrainerCore
from riverops.schemas.errors import ConfigError
from riverops.sections import PolicySettings, RetrainerSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SINCE = T0.timestamp() * 1000.0  # the alarm's time
ALWAYS = lambda ends: True  # noqa: E731


def request(**params: Any) -> dict[str, Any]:
    return {"request_id": "r1", "model": "sine", "reason": "drift", "requested_by": "monitor",
            "requested_at": T0, "params": {"since_ms": SINCE, **params}}


def settings(**knobs: Any) -> RetrainerSettings:
    base: dict[str, Any] = {"window_events": 5_000, "drift_min_samples": 2_500, "cooldown_seconds": 0.0,
                            "policy": PolicySettings(metric="accuracy", margin=0.02, min_samples=300)}
    return RetrainerSettings(**{**base, **knobs})


def sine_rows(function: int, seed: int, n: int) -> list[tuple[dict[str, float], bool]]:
    return [({str(k): float(v) for k, v in x.items()}, bool(y))
            for x, y in synth.Sine(classification_function=function, seed=seed).take(n)]


def trained_champion() -> Any:
    model = get_spec("logreg").build(seed=1)
    rows = sine_rows(0, 1, 3_000)
    learn_in_order(model, [x for x, _ in rows], [y for _, y in rows])
    return model


def records(before: int, after: int, *, after_rows: list[tuple[dict[str, float], bool]] | None = None
            ) -> list[dict[str, Any]]:  # fmt: skip
    """Feedback: ``before`` SINE1 events up to the alarm, then ``after`` SINE2 events."""
    rows = sine_rows(0, 2, before) + (after_rows if after_rows is not None else sine_rows(1, 3, after))
    out = []
    for i, (x, y) in enumerate(rows):
        at = T0 + timedelta(milliseconds=i - before)  # the alarm at the first SINE2 event
        out.append({"event_id": f"s{i:05d}", "model": "sine", "event_time": at, "features": x,
                    "label": y, "label_time": at, "predictions": []})
    return out


def fed(core: RetrainerCore, recs: list[dict[str, Any]]) -> None:
    for i, r in enumerate(recs):
        core.add_feedback(r, ("feedback", 0, i))


# -- the core's stages ---------------------------------------------------------------------
def test_a_drift_request_runs_first_at_recovery_samples_then_waits_for_twice_as_many() -> None:
    core = RetrainerCore(settings(recovery_samples=400))
    core.on_request(request(), ends={}, now=0.0)
    fed(core, records(100, 399))
    assert core.ready(now=1.0, at_end=ALWAYS) == []
    fed(core, records(100, 400))
    [ready] = core.ready(now=1.0, at_end=ALWAYS)
    assert core.recovery_stage(ready) == 400
    assert core.again(ready) == 800  # not promoted: twice the post-alarm feedback
    assert core.ready(now=2.0, at_end=ALWAYS) == []
    assert core.waiting == [request()]
    fed(core, records(100, 800))
    [ready] = core.ready(now=3.0, at_end=ALWAYS)
    assert core.recovery_stage(ready) == 800
    assert core.again(ready) == 1_600
    fed(core, records(100, 1_600))
    [ready] = core.ready(now=4.0, at_end=ALWAYS)
    assert core.again(ready) == 2_500  # capped: the settled run
    fed(core, records(100, 2_500))
    [ready] = core.ready(now=5.0, at_end=ALWAYS)
    assert core.recovery_stage(ready) is None  # the settled run is not a fast one
    assert core.again(ready) is None and core.waiting == []


def test_a_fast_promotion_is_followed_by_the_settled_run() -> None:
    core = RetrainerCore(settings(recovery_samples=400))
    core.on_request(request(), ends={}, now=0.0, source=("retrain", 0, 7))
    fed(core, records(10, 400))
    [ready] = core.ready(now=1.0, at_end=ALWAYS)
    assert core.again(ready, settle=True) == 2_500
    assert core.holding() == {("retrain", 0): 7}  # still holds the commit: a crash re-reads it


def test_no_fast_run_without_recovery_samples_or_past_the_wait() -> None:
    core = RetrainerCore(settings(recovery_samples=None))
    core.on_request(request(), ends={}, now=0.0)
    fed(core, records(10, 400))
    assert core.ready(now=1.0, at_end=ALWAYS) == []  # waits for drift_min_samples, as before
    late = RetrainerCore(settings(recovery_samples=400, drift_wait_seconds=5.0))
    late.on_request(request(), ends={}, now=0.0)
    [ready] = late.ready(now=6.0, at_end=ALWAYS)  # nothing came: past the wait
    assert late.recovery_stage(ready) is None
    above = RetrainerCore(settings(recovery_samples=3_000))  # not below drift_min_samples
    above.on_request(request(), ends={}, now=0.0)
    fed(above, records(10, 2_500))
    [ready] = above.ready(now=1.0, at_end=ALWAYS)
    assert above.recovery_stage(ready) is None


# -- the evidence --------------------------------------------------------------------------
def test_the_gain_bound_proves_a_large_gain_not_a_tie_and_not_on_one_class() -> None:
    rng = random.Random(0)
    y = [rng.random() < 0.3 for _ in range(150)]
    good = [0.8 if v else 0.2 for v in y]
    noise = [rng.random() for _ in y]
    large = gain_bound(y, good, noise, metric="roc_auc", higher_is_better=True)
    assert large > 0.3
    assert gain_bound(y, noise, noise, metric="roc_auc", higher_is_better=True) == 0.0
    assert gain_bound(y, good, noise, metric="roc_auc", higher_is_better=True) == large  # seeded
    assert gain_bound([False] * 50, good[:50], noise[:50], metric="roc_auc",
                      higher_is_better=True) == float("-inf")  # no fraud: nothing proved
    two = [True, False]  # 2 rows: most resamples lack a class
    assert gain_bound(two, [0.9, 0.1], [0.1, 0.9], metric="roc_auc", higher_is_better=True) < 0
    losses = gain_bound(y, good, noise, metric="log_loss", higher_is_better=False)
    assert losses > 0  # lower is better: the gain is the champion's loss minus the candidate's
    with pytest.raises(ConfigError):
        gain_bound(y, good, noise, metric="roc_auc", higher_is_better=True, confidence=1.0)


def test_the_policy_promotes_on_a_small_holdout_only_with_a_bound_over_the_margin() -> None:
    policy = PromotionPolicy(metric="roc_auc", margin=0.01, min_samples=500)
    better, champion = {"roc_auc": 0.9, "accuracy": 0.97}, {"roc_auc": 0.4, "accuracy": 0.965}
    assert policy.decide(better, champion, 120).action == "challenger"  # as before
    assert policy.decide(better, champion, 120, gain_low=0.3).action == "promote"
    waiting = policy.decide(better, champion, 120, gain_low=0.005)
    assert waiting.action == "challenger" and "lower bound 0.005 < margin 0.01" in waiting.reason
    # the guards come first: a bound cannot buy a model that flags everything
    flags_all = {"roc_auc": 0.9, "accuracy": 0.2}
    assert policy.decide(flags_all, champion, 120, gain_low=0.3).action == "reject"
    assert policy.decide({"roc_auc": 0.3}, champion, 120, gain_low=0.3).action == "reject"


# -- candidates on a real stream -----------------------------------------------------------
def test_a_warm_start_learns_a_copy_and_leaves_the_champion_alone() -> None:
    champion = trained_champion()
    before = pickle.dumps(champion)
    frame = feedback_frame(records(500, 400))
    cut = T0
    warm = retrain(frame, spec_name="logreg", seed=1, champion=champion, holdout_rows=120,
                   learn_since=cut, start_from=champion, passes=3)
    assert pickle.dumps(champion) == before
    assert warm.warm_start and warm.passes == 3 and warm.train_samples == 280
    assert warm.model is not champion
    again = retrain(frame, spec_name="logreg", seed=1, champion=champion, holdout_rows=120,
                    learn_since=cut, start_from=champion, passes=3)
    assert pickle.dumps(again.model) == pickle.dumps(warm.model)  # same rows, same model
    with pytest.raises(ConfigError):
        retrain(frame, spec_name="logreg", seed=1, start_from=champion, params={"l2": 0.1})
    with pytest.raises(ConfigError):
        retrain(frame, spec_name="logreg", seed=1, passes=0)


def test_a_fast_run_on_sine2_promotes_a_candidate_back_at_the_old_level() -> None:
    champion = trained_champion()
    core = RetrainerCore(settings(recovery_samples=800))
    core.on_request(request(), ends={}, now=0.0)
    recs = records(2_000, 800)
    fed(core, recs)
    [ready] = core.ready(now=1.0, at_end=ALWAYS)
    frame = feedback_frame(recs)
    level = level_before(frame, SINCE, champion, "accuracy")
    assert level is not None and level > 0.95  # SINE1's champion before the alarm
    judged = judge(core, ready, frame, spec_name="logreg", champion=champion)
    assert judged.stage == 800 and judged.register and judged.decision.action == "promote", judged.decision
    assert judged.retry == 2_500  # the settled run follows
    result = judged.result
    assert result is not None and result.train_rows[0] == 2_000  # post-alarm rows only
    assert result.holdout_samples == 240 and result.gain_low is not None and result.gain_low >= 0.02
    assert result.candidate_metrics["accuracy"] >= level - core.settings.recovery_tolerance
    assert result.champion_metrics["accuracy"] < 0.2  # SINE2 reverses the boundary
    assert "back within" in judged.decision.reason and "events after the alarm" in judged.learned
    # on fresh SINE2 events the promoted model is right where the champion is wrong
    fresh = sine_rows(1, 9, 1_000)
    right = sum(result.model.predict_one(x) == y for x, y in fresh) / len(fresh)
    assert right > 0.9


def test_a_fast_run_that_learned_nothing_promotes_nothing_and_waits() -> None:
    champion = trained_champion()
    rng = random.Random(5)
    noise = [(x, rng.random() < 0.5) for x, _ in sine_rows(1, 3, 400)]  # labels unrelated to x
    core = RetrainerCore(settings(recovery_samples=400))
    core.on_request(request(), ends={}, now=0.0)
    recs = records(2_000, 400, after_rows=noise)
    fed(core, recs)
    [ready] = core.ready(now=1.0, at_end=ALWAYS)
    judged = judge(core, ready, feedback_frame(recs), spec_name="logreg", champion=champion)
    assert judged.decision.action != "promote" and not judged.register, judged.decision
    assert judged.retry == 800


def test_the_fast_candidate_is_the_better_of_warm_and_scratch_on_the_same_tail() -> None:
    champion = trained_champion()
    frame = feedback_frame(records(1_000, 400))
    policy = PromotionPolicy(metric="accuracy", margin=0.02, min_samples=300)
    both = recovery_candidate(frame, since_ms=SINCE, policy=policy, spec_name="logreg", seed=1,
                              champion=champion, holdout_fraction=0.3, passes=8)
    each = [recovery_candidate(frame, since_ms=SINCE, policy=policy, spec_name="logreg", seed=1,
                               champion=champion, holdout_fraction=0.3, passes=8, starts=(start,))
            for start in ("warm", "scratch")]
    assert {r.holdout_rows for r in each} == {both.holdout_rows}  # the same newest 30%
    assert both.candidate_metrics["accuracy"] == max(r.candidate_metrics["accuracy"] for r in each)
    with pytest.raises(ConfigError):
        recovery_candidate(frame, since_ms=SINCE, policy=policy, spec_name="logreg", seed=1,
                           champion=None, holdout_fraction=0.3)
    with pytest.raises(ConfigError):
        recovery_candidate(frame, since_ms=SINCE, policy=policy, spec_name="logreg", seed=1,
                           champion=champion, holdout_fraction=0.3, starts=("window",))  # type: ignore[arg-type]
