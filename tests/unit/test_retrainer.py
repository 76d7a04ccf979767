"""Retrainer core: the feedback window frame, training on the head, a fair holdout, and
byte-for-byte reproducible artifacts."""

from __future__ import annotations

import math
import os
import pickle
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from river import metrics

from riverops.models.artifacts import ArtifactStore, pack
from riverops.models.specs import get_spec
from riverops.roles.retrainer.frame import feature_rows, feedback_frame
from riverops.roles.retrainer.scoring import binary_metrics, regression_metrics
from riverops.roles.retrainer.training import retrain
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.validation import MAX_STRING

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
KEY = b"test signing key"


def made(version: int = 1, variant: str = "champion", prediction: Any = None,
         scores: dict[str, float] | None = None) -> dict[str, Any]:
    return {"version": version, "variant": variant, "prediction": prediction,
            "scores": scores or {}}


def record(i: int, features: dict[str, Any], label: Any, *, at: float | None = None,
           predictions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    t = T0 + timedelta(seconds=i if at is None else at)
    return {"event_id": f"e{i:05d}", "model": "fraud", "entity_id": "c", "event_time": t,
            "features": features, "label": label, "label_time": t + timedelta(seconds=5),
            "predictions": predictions or []}


def stream(n: int, *, seed: int = 0, strings: bool = True,
           regression: bool = False) -> list[dict[str, Any]]:
    """Feedback on a learnable concept: numbers, a category, a flag and holes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x: dict[str, Any] = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1),
                             "v": rng.random() < 0.3}
        if rng.random() < 0.1:
            x["b"] = None
        country = rng.choice(["fr", "de", "us", None])
        if strings:
            x["c"] = country
        signal = 1.5 * x["a"] - (x["b"] or 0.0) + (1.0 if country == "fr" else 0.0)
        if regression:
            label: Any = 3.0 * signal + rng.gauss(0, 0.5)
        else:
            label = signal + rng.gauss(0, 0.7) > 0.3
        p = 1 / (1 + math.exp(-signal))
        out.append(record(i, x, label, predictions=[
            made(1, "champion", p >= 0.5, {"True": p, "False": 1 - p}),
            made(2, "challenger", True, {"True": 0.99, "False": 0.01}),
        ]))
    return out


# --- the frame -------------------------------------------------------------------------


def test_frame_has_one_row_per_event_sorted_by_event_time_first_duplicate_kept() -> None:
    recs = [record(3, {"x": 3.0}, True), record(1, {"x": 1.0}, False),
            {**record(3, {"x": 99.0}, False)}, record(2, {"x": 2.0}, True)]
    frame = feedback_frame(recs)
    assert frame["event_id"].tolist() == ["e00001", "e00002", "e00003"]
    assert frame["feature:x"].tolist() == [1.0, 2.0, 3.0]
    assert frame["label"].tolist() == [False, True, True]  # the first e00003 won
    assert str(frame["event_time"].dt.tz) == "UTC"
    assert frame["event_time"].iloc[0].to_pydatetime() == T0 + timedelta(seconds=1)


def test_frame_does_not_depend_on_arrival_order() -> None:
    recs = [record(i, {"x": float(i % 3)}, i % 2 == 0, at=i // 4) for i in range(40)]
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    pd.testing.assert_frame_equal(feedback_frame(recs), feedback_frame(shuffled))


def test_feature_columns_are_prefixed_sorted_and_missing_values_are_holes() -> None:
    recs = [record(0, {"z": 1, "label": "x", "s": "fr"}, True),
            record(1, {"z": None, "flag": True}, False),
            record(2, {}, True)]
    frame = feedback_frame(recs)
    features = [c for c in frame.columns if c.startswith("feature:")]
    assert features == ["feature:flag", "feature:label", "feature:s", "feature:z"]
    assert frame["label"].tolist() == [True, False, True]  # a feature may be called label
    assert frame["feature:z"].isna().tolist() == [False, True, True]
    assert feature_rows(frame) == [{"label": "x", "s": "fr", "z": 1.0}, {"flag": True}, {}]


def test_champion_columns_come_from_the_champion_prediction_only() -> None:
    recs = [
        record(0, {"x": 1.0}, True, predictions=[
            made(2, "challenger", False, {"True": 0.1}), made(1, "champion", True, {"True": 0.8})]),
        record(1, {"x": 1.0}, True, predictions=[made(1, "champion", None, {"False": 0.25})]),
        record(2, {"x": 1.0}, True, predictions=[made(3, "shadow", True, {"True": 0.9})]),
    ]
    frame = feedback_frame(recs)
    assert frame["champion_version"].tolist() == [1, 1, pd.NA]
    assert frame["champion_prediction"].tolist() == [True, None, None]
    assert frame["champion_score"].tolist()[:2] == [0.8, 0.75]
    assert math.isnan(frame["champion_score"].iloc[2])


def test_window_events_keeps_the_last_n_by_event_time() -> None:
    recs = [record(i, {"x": float(i)}, True) for i in range(10)]
    frame = feedback_frame(list(reversed(recs)), window_events=3)
    assert frame["event_id"].tolist() == ["e00007", "e00008", "e00009"]


def test_window_seconds_keeps_events_after_latest_minus_t() -> None:
    recs = [record(i, {"x": float(i)}, True) for i in range(10)]
    frame = feedback_frame(recs, window_seconds=3.0)  # (9 - 3, 9]: 7, 8, 9
    assert frame["event_id"].tolist() == ["e00007", "e00008", "e00009"]


@pytest.mark.parametrize(("events", "seconds", "expected"), [(2, 5.0, 2), (6, 3.0, 3)])
def test_with_both_limits_the_smaller_window_wins(events: int, seconds: float,
                                                  expected: int) -> None:
    recs = [record(i, {"x": float(i)}, True) for i in range(10)]
    frame = feedback_frame(recs, window_events=events, window_seconds=seconds)
    assert frame["event_id"].tolist() == [f"e{i:05d}" for i in range(10 - expected, 10)]


def test_event_times_may_be_epoch_millis_and_naive_means_utc() -> None:
    recs = [{**record(0, {"x": 1.0}, True), "event_time": 1_000},
            {**record(1, {"x": 1.0}, True), "event_time": datetime(1970, 1, 1, 0, 0, 2)}]
    frame = feedback_frame(recs)
    assert frame["event_time"].tolist() == [pd.Timestamp(1_000, unit="ms", tz="UTC"),
                                            pd.Timestamp(2_000, unit="ms", tz="UTC")]


def test_invalid_records_raise_or_go_to_on_invalid() -> None:
    good = record(0, {"x": 1.0}, True)
    bad = [{**good, "event_id": ""}, {**good, "event_id": "n", "label": None},
           {**good, "event_id": "f", "features": {"x": float("inf")}},
           {**good, "event_id": "t", "event_time": "yesterday"},
           {**good, "event_id": "l", "label_time": "later"},
           # what riverops.schemas.validation refuses everywhere: a NaN, a huge string
           {**good, "event_id": "m", "features": {"x": float("nan")}},
           {**good, "event_id": "s", "features": {"x": "y" * (MAX_STRING + 1)}}]
    for one in bad:
        with pytest.raises(InvalidEventError):
            feedback_frame([good, one])
    seen: list[str] = []
    frame = feedback_frame([good, *bad], on_invalid=lambda r, exc: seen.append(str(exc)))
    assert frame["event_id"].tolist() == ["e00000"] and len(seen) == 7
    assert any("feedback m: feature 'x' is nan" in why for why in seen), seen


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        feedback_frame([], window_events=0)
    with pytest.raises(ConfigError):
        feedback_frame([], window_seconds=-1.0)
    with pytest.raises(ConfigError):
        feedback_frame([record(0, {}, True)], sources=[])


def test_sources_become_columns_and_offset_spans_of_the_window() -> None:
    recs = stream(300)
    sources = [("feedback", i % 2, 1000 + i) for i in range(300)]
    frame = feedback_frame(recs, sources=sources, window_events=200)
    assert frame["offset"].tolist() == list(range(1100, 1300))
    result = retrain(frame, spec_name="logreg", seed=1)
    assert result.training_data == [
        {"topic": "feedback", "partition": 0, "start": 1100, "end": 1299},
        {"topic": "feedback", "partition": 1, "start": 1101, "end": 1300},
    ]


# --- retraining ------------------------------------------------------------------------


def test_the_candidate_learns_the_head_one_by_one_in_event_time_order() -> None:
    recs = stream(1000)
    frame = feedback_frame(recs)
    result = retrain(frame, spec_name="logreg", seed=3)
    assert (result.train_samples, result.holdout_samples) == (800, 200)
    assert (result.train_rows, result.holdout_rows) == ((0, 800), (800, 1000))
    assert result.samples == 800 and result.seed == 3 and result.spec == "logreg"
    assert result.params == dict(get_spec("logreg").params)
    by_hand = get_spec("logreg").build(seed=3)
    for x, y in zip(feature_rows(frame)[:800], frame["label"][:800], strict=True):
        by_hand.learn_one(x, y)
    assert pickle.dumps(result.model, protocol=5) == pickle.dumps(by_hand, protocol=5)
    assert result.window_start == T0
    assert result.holdout_start == T0 + timedelta(seconds=800)
    assert result.window_end == T0 + timedelta(seconds=999)


def test_pinning_the_idle_generators_of_a_tree_changes_no_prediction() -> None:
    frame = feedback_frame(stream(1000))
    result = retrain(frame, spec_name="hat", seed=3)
    by_hand = get_spec("hat").build(seed=3)
    rows = feature_rows(frame)
    for x, y in zip(rows[:800], frame["label"][:800], strict=True):
        by_hand.learn_one(x, y)
    assert [result.model.predict_proba_one(x) for x in rows] == [
        by_hand.predict_proba_one(x) for x in rows]


def test_candidate_and_champion_are_scored_on_the_same_tail() -> None:
    frame = feedback_frame(stream(1000))
    first = retrain(frame, spec_name="logreg", seed=3)
    # the same model as champion must score exactly the same on the same tail
    again = retrain(frame, spec_name="logreg", seed=3, champion=first.model)
    assert again.champion_metrics == again.candidate_metrics == first.candidate_metrics
    assert again.champion_samples == 200
    assert again.metrics == {**first.candidate_metrics,
                             **{f"champion_{k}": v for k, v in first.candidate_metrics.items()}}
    assert set(first.candidate_metrics) == {"accuracy", "roc_auc", "log_loss"}
    assert first.candidate_metrics["roc_auc"] > 0.85  # it learned the concept


def test_the_champion_is_not_retrained_or_changed() -> None:
    frame = feedback_frame(stream(600))
    champion = retrain(frame, spec_name="hat", seed=1).model
    before = pickle.dumps(champion, protocol=5)
    retrain(frame, spec_name="logreg", seed=1, champion=champion)
    assert pickle.dumps(champion, protocol=5) == before


def test_without_a_champion_model_the_recorded_champion_predictions_are_scored() -> None:
    frame = feedback_frame(stream(1000))
    result = retrain(frame, spec_name="logreg", seed=3)
    tail = frame.iloc[800:]
    expected = binary_metrics(tail["label"].tolist(), tail["champion_score"].tolist(),
                              tail["champion_prediction"].tolist())
    assert result.champion_metrics == expected and result.champion_samples == 200
    assert "champion_roc_auc" in result.metrics


def test_an_unreadable_recorded_prediction_falls_back_to_its_score() -> None:
    recs = stream(500)
    for r in recs:
        r["predictions"][0]["prediction"] = "maybe"
    result = retrain(feedback_frame(recs), spec_name="logreg", seed=1)
    assert result.champion_samples == 100 and "champion_accuracy" in result.metrics


def test_no_champion_at_all_gives_empty_champion_metrics() -> None:
    recs = [{**r, "predictions": []} for r in stream(500)]
    result = retrain(feedback_frame(recs), spec_name="logreg", seed=1)
    assert result.champion_metrics == {} and result.champion_samples == 0
    assert set(result.metrics) == {"accuracy", "roc_auc", "log_loss"}


def test_metrics_are_finite_only() -> None:
    # a tail with one class has no ROC AUC
    recs = [record(i, {"x": float(i % 5)}, i < 400 and i % 2 == 0) for i in range(500)]
    result = retrain(feedback_frame(recs), spec_name="logreg", seed=1)
    assert "roc_auc" not in result.candidate_metrics
    assert all(math.isfinite(v) for v in result.metrics.values())


def test_binary_labels_are_coerced_like_the_learner_does() -> None:
    recs = stream(400, strings=False)
    as_bool = retrain(feedback_frame(recs), spec_name="logreg", seed=1)
    as_num = [{**r, "label": 1.0 if r["label"] else 0.0} for r in recs]
    as_str = [{**r, "label": "true" if r["label"] else "false"} for r in recs]
    for other in (as_num, as_str):
        again = retrain(feedback_frame(other), spec_name="logreg", seed=1)
        assert pickle.dumps(again.model, protocol=5) == pickle.dumps(as_bool.model, protocol=5)
    with pytest.raises(InvalidEventError, match="not a binary class"):
        retrain(feedback_frame([{**r, "label": "maybe"} for r in recs]), spec_name="logreg",
                seed=1)


def test_regression_specs_get_regression_metrics() -> None:
    recs = stream(1500, regression=True)
    for r in recs:
        r["predictions"] = [made(1, "champion", r["label"] + 1.0)]  # off by one exactly
    result = retrain(feedback_frame(recs), spec_name="linreg", seed=1)
    assert set(result.candidate_metrics) == {"mae", "rmse", "r2"}
    assert result.candidate_metrics["r2"] > 0.8
    assert result.champion_metrics["mae"] == pytest.approx(1.0)
    assert result.champion_metrics["rmse"] == pytest.approx(1.0)


def test_a_window_too_small_is_refused_with_a_clear_message() -> None:
    frame = feedback_frame(stream(100))
    with pytest.raises(InvalidEventError, match=r"window too small.*80 to learn from.*min_train=100"):
        retrain(frame, spec_name="logreg", seed=1)
    with pytest.raises(InvalidEventError, match="window too small"):
        retrain(feedback_frame([]), spec_name="logreg", seed=1)
    assert retrain(frame, spec_name="logreg", seed=1, min_train=80).train_samples == 80


def test_bad_options_are_config_errors() -> None:
    frame = feedback_frame(stream(300))
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError):
            retrain(frame, spec_name="logreg", seed=1, holdout_fraction=fraction)
    with pytest.raises(ConfigError, match="unknown model spec"):
        retrain(frame, spec_name="nope", seed=1)
    with pytest.raises(ConfigError, match="takes no param"):
        retrain(frame, spec_name="logreg", seed=1, params={"depth": 3})


def test_params_override_the_spec_and_are_recorded() -> None:
    result = retrain(feedback_frame(stream(300)), spec_name="hat", seed=1,
                     params={"grace_period": 50.0})
    assert result.params == {"grace_period": 50.0, "delta": 1e-7}
    assert result.model.grace_period == 50


def test_an_unsorted_frame_is_sorted_before_the_split() -> None:
    frame = feedback_frame(stream(300))
    shuffled = frame.sample(frac=1.0, random_state=1)
    a = retrain(frame, spec_name="logreg", seed=1)
    b = retrain(shuffled, spec_name="logreg", seed=1)
    assert pickle.dumps(a.model, protocol=5) == pickle.dumps(b.model, protocol=5)
    assert a.metrics == b.metrics


# --- reproducibility -------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["logreg", "hat"])
def test_same_window_same_seed_same_artifact_sha256(spec: str, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    recs = stream(2000)
    shuffled = recs[:]
    random.Random(9).shuffle(shuffled)  # arrival order must not matter either
    first = retrain(feedback_frame(recs), spec_name=spec, seed=7)
    second = retrain(feedback_frame(shuffled), spec_name=spec, seed=7)
    a = pack(first.model, key=KEY, store=store)
    b = pack(second.model, key=KEY, store=store)
    assert a.sha256 == b.sha256 and a.signature == b.signature
    assert first.metrics == second.metrics


_CHILD = """
import pickle, random
from datetime import UTC, datetime, timedelta
from riverops.models.artifacts import sha256_hex
from riverops.roles.retrainer.frame import feedback_frame
from riverops.roles.retrainer.training import retrain
rng = random.Random(0)
t0 = datetime(2024, 1, 1, tzinfo=UTC)
numbers, strings = [], []
for i in range(1500):
    x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
    r = {"event_id": f"e{i}", "event_time": t0 + timedelta(seconds=i), "features": x,
         "label": x["a"] + rng.gauss(0, 0.5) > 0, "label_time": t0, "predictions": []}
    numbers.append(r)
    strings.append({**r, "features": {**x, "c": rng.choice(["fr", "de", "us"])}})
for spec, recs in (("logreg", strings), ("hat", numbers)):
    model = retrain(feedback_frame(recs), spec_name=spec, seed=7).model
    print(spec, sha256_hex(pickle.dumps(model, protocol=5)))
"""


def test_artifacts_repeat_across_processes() -> None:
    """Across processes with different string hashing: logreg (with a string feature) and
    hat on numbers. A tree with string features keeps sets of categories whose pickled
    order follows PYTHONHASHSEED: it repeats across processes only with a fixed one."""
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        outputs.add(out.stdout)
    assert len(outputs) == 1 and len(outputs.pop().split()) == 4


# --- the metrics -----------------------------------------------------------------------


def test_roc_auc_is_exact_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.4).tolist()
    p = np.round(rng.random(300), 1).tolist()  # many ties
    pairs = [(a, b) for a, ya in zip(p, y, strict=True) if ya
             for b, yb in zip(p, y, strict=True) if not yb]
    expected = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert binary_metrics(y, p)["roc_auc"] == pytest.approx(expected, abs=1e-12)


def test_binary_metrics_match_river_where_river_is_exact() -> None:
    rng = random.Random(0)
    y = [rng.random() < 0.5 for _ in range(500)]
    p = [min(max(rng.gauss(0.65 if t else 0.35, 0.2), 0.0), 1.0) for t in y]
    acc, loss = metrics.Accuracy(), metrics.LogLoss()
    for t, q in zip(y, p, strict=True):
        acc.update(t, q >= 0.5)
        loss.update(t, q)
    got = binary_metrics(y, p)
    assert got["accuracy"] == pytest.approx(acc.get())
    assert got["log_loss"] == pytest.approx(loss.get())


def test_unscored_rows_count_for_accuracy_when_their_class_is_known() -> None:
    got = binary_metrics([True, False, True], [0.9, math.nan, math.nan], [None, False, None])
    assert got["accuracy"] == 1.0  # the third row has neither score nor class: left out
    assert "roc_auc" not in got  # one scored row


def test_regression_metrics_match_river() -> None:
    rng = random.Random(0)
    y = [rng.gauss(0, 3) for _ in range(300)]
    p = [v + rng.gauss(0, 1) for v in y]
    mae, rmse, r2 = metrics.MAE(), metrics.RMSE(), metrics.R2()
    for t, q in zip(y, p, strict=True):
        for m in (mae, rmse, r2):
            m.update(t, q)
    got = regression_metrics([*y, 5.0], [*p, math.nan])  # a row without a prediction is left out
    assert got == pytest.approx({"mae": mae.get(), "rmse": rmse.get(), "r2": r2.get()})
    assert regression_metrics([1.0, 1.0], [1.0, 2.0]) == {"mae": 0.5, "rmse": math.sqrt(0.5)}


# --- learning from a cut (the answer to a drift alarm) -----------------------------------


def flipped(n: int, flip_at: int, *, seed: int = 5) -> list[dict[str, Any]]:
    """y = (a > 0) until ``flip_at``, y = (a <= 0) after: a concept that reverses."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a = rng.gauss(0, 1)
        out.append(record(i, {"a": a, "b": rng.gauss(0, 1)}, (a > 0) != (i >= flip_at)))
    return out


def test_learn_since_trains_on_the_rows_after_the_cut_and_holdout_rows_sets_the_tail() -> None:
    frame = feedback_frame(flipped(3000, 2600))
    cut = T0 + timedelta(seconds=2600)
    recent = retrain(frame, spec_name="logreg", seed=1, holdout_rows=100, learn_since=cut)
    whole = retrain(frame, spec_name="logreg", seed=1, holdout_rows=100)
    assert recent.train_rows == (2600, 2900) and recent.train_samples == 300
    assert whole.train_rows == (0, 2900) and recent.holdout_rows == whole.holdout_rows == (2900, 3000)
    assert recent.window_start == cut
    # 2,600 rows of the old concept outweigh 300 of the new one; 300 alone learn it
    assert recent.candidate_metrics["accuracy"] > 0.8 > whole.candidate_metrics["accuracy"]
    with pytest.raises(InvalidEventError, match="the cut at"):
        retrain(frame, spec_name="logreg", seed=1, holdout_rows=100,
                learn_since=T0 + timedelta(seconds=2850))


def test_after_a_drift_alarm_the_better_of_both_windows_is_the_candidate() -> None:
    from riverops.roles.retrainer.policy import PromotionPolicy
    from riverops.roles.retrainer.training import best_candidate

    frame = feedback_frame(flipped(3000, 2600))
    alarm = (T0 + timedelta(seconds=2600)).timestamp() * 1000.0
    policy = PromotionPolicy(metric="accuracy")
    best = best_candidate(frame, since_ms=alarm, policy=policy, spec_name="logreg", seed=1,
                          champion=None, holdout_fraction=0.25)
    assert best.train_rows == (2600, 2900) and best.holdout_samples == 100  # 25% of 400 recent
    assert best.candidate_metrics["accuracy"] > 0.8
    plain = best_candidate(frame, since_ms=None, policy=policy, spec_name="logreg", seed=1,
                           champion=None, holdout_fraction=0.2)
    assert plain.train_rows == (0, 2400)
