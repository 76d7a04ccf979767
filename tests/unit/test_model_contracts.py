"""One contract suite over every spec of the zoo (River's ``river/checks`` spirit), and the
batched helpers that the scorer and the learner call."""

from __future__ import annotations

import copy
import math
import pickle
import random
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from river import datasets, dummy, linear_model, metrics, preprocessing, stats
from river.datasets import synth

from riverops.models.batch import (
    PREDICT_MANY_FROM,
    labels_and_scores,
    learn_batch,
    predict_batch,
    predict_proba_batch,
    supports_many,
    to_frame,
)
from riverops.models.specs import ZOO, FeatureEncoder, ModelSpec, drop_missing, get_spec
from riverops.schemas.errors import ConfigError

Row = tuple[dict[str, Any], Any]

SPECS = sorted(ZOO)
CLASSIFIERS = [name for name in SPECS if ZOO[name].task != "regression"]


def _rows_for(spec: ModelSpec, n: int | None = None) -> list[Row]:
    """An easy stream for the spec's task, short for the slow forest."""
    n = n if n is not None else (300 if spec.name == "arf" else 1000)
    if spec.task == "regression":
        return [({f"x{k}": v for k, v in x.items()}, y) for x, y in synth.Friedman(seed=1).take(n)]
    return [(x, bool(y)) for x, y in datasets.Phishing().take(n)]


def _categorical_rows(spec: ModelSpec, n: int, *, seed: int = 1) -> list[Row]:
    """Targets that only string and boolean features explain."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for _ in range(n):
        color, flag = rng.choice(["red", "blue", "green"]), rng.random() < 0.5
        if spec.task == "regression":
            rows.append(({"color": color, "flag": flag}, 10.0 * (color == "red") + 5.0 * flag + rng.gauss(0, 1)))
        else:
            rows.append(({"color": color, "flag": flag}, color == "red" or flag))
    return rows


def _predict(spec: ModelSpec, model: Any, x: dict[str, Any]) -> Any:
    return model.predict_one(x) if spec.task == "regression" else model.predict_proba_one(x)


def _check_output(spec: ModelSpec, output: Any) -> None:
    if spec.task == "regression":
        assert isinstance(output, float | int) and math.isfinite(output)
        return
    assert isinstance(output, dict)
    assert all(0.0 <= p <= 1.0 for p in output.values())
    if output:
        assert math.isclose(sum(output.values()), 1.0, abs_tol=1e-6)


def _trained(spec: ModelSpec, rows: list[Row], *, seed: int = 42) -> Any:
    model = spec.build(seed=seed)
    for x, y in rows:
        model.learn_one(x, y)
    return model


@pytest.fixture(params=SPECS)
def spec(request: pytest.FixtureRequest) -> ModelSpec:
    return ZOO[request.param]


# --- the contract, for every spec ----------------------------------------------------------


def test_learn_and_predict_do_not_mutate_inputs(spec: ModelSpec) -> None:
    model = spec.build(seed=1)
    x = {"amount": 12.5, "vip": True, "country": "fr"}
    y: Any = 3.0 if spec.task == "regression" else True
    before = copy.deepcopy(x)
    for _ in range(3):
        model.learn_one(x, y)
        _predict(spec, model, x)
    assert x == before

    rows: list[dict[str, Any]] = [
        {"amount": 1.0, "vip": None, "country": "fr"}, {"amount": 2.0}, {"country": "de"}
    ]
    rows_before = copy.deepcopy(rows)
    learn_batch(model, rows, [y] * len(rows))
    (predict_batch if spec.task == "regression" else predict_proba_batch)(model, rows)
    assert rows == rows_before


def test_pickle_round_trip_gives_identical_predictions(spec: ModelSpec) -> None:
    rows = _rows_for(spec)
    model = _trained(spec, rows[:-50])
    clone = pickle.loads(pickle.dumps(model, protocol=5))
    for x, _ in rows[-50:]:
        assert _predict(spec, clone, x) == _predict(spec, model, x)


def test_same_seed_same_stream_same_predictions(spec: ModelSpec) -> None:
    rows = _rows_for(spec)
    first, second = _trained(spec, rows[:-50], seed=7), _trained(spec, rows[:-50], seed=7)
    assert first is not second
    for x, _ in rows[-50:]:
        assert _predict(spec, first, x) == _predict(spec, second, x)


def test_missing_and_new_features_are_handled(spec: ModelSpec) -> None:
    rows = _rows_for(spec)
    model = _trained(spec, rows)
    x = rows[0][0]
    keys = sorted(x)
    probes = [
        {},
        {k: x[k] for k in keys[: len(keys) // 2]},  # half the features missing
        {**x, "brand_new": 3.5, "brand_new_kind": "never seen"},
        {k: None for k in keys},
    ]
    for probe in probes:
        _check_output(spec, _predict(spec, model, drop_missing(probe)))
    batched = (predict_batch if spec.task == "regression" else predict_proba_batch)(model, probes)
    for output in batched:
        _check_output(spec, output)
    # learning on holes and new features keeps the model sound
    holey = [{**{k: None for k in keys[::3]}, **{k: v for k, v in r.items() if k not in keys[::3]},
              "extra": 1.0} for r, _ in rows[:200]]
    learn_batch(model, holey, [y for _, y in rows[:200]])
    for probe in probes:
        _check_output(spec, _predict(spec, model, drop_missing(probe)))


def _progressive(spec: ModelSpec, rows: list[tuple[dict[str, Any], Any]]) -> tuple[Any, Any]:
    """(the spec's progressive metric, the MAE of a running mean): predict, then learn."""
    model = spec.build(seed=1)
    metric: metrics.base.Metric = metrics.MAE() if spec.task == "regression" else metrics.Accuracy()
    baseline, mean = metrics.MAE(), dummy.StatisticRegressor(stats.Mean())
    for x, y in rows:
        predicted = model.predict_one(x)
        if predicted is not None:
            metric.update(y, predicted)
        baseline.update(y, mean.predict_one(x))
        mean.learn_one(x, y)
        model.learn_one(x, y)
    return metric, baseline


def test_string_and_boolean_features_are_learned(spec: ModelSpec) -> None:
    metric, baseline = _progressive(spec, _categorical_rows(spec, 300 if spec.name == "arf" else 1000))
    if spec.task == "regression":
        assert metric.get() < 0.5 * baseline.get()
    else:
        assert metric.get() > 0.85


def test_a_short_stream_is_learned(spec: ModelSpec) -> None:
    metric, baseline = _progressive(spec, _rows_for(spec))
    if spec.task == "regression":
        assert metric.get() < 0.8 * baseline.get()
    else:
        assert metric.get() > 0.7


# --- specs ----------------------------------------------------------------------------------


def test_unknown_spec_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="'nope'.*arf, hat, hoeffding-tree, linreg, logreg, tree-regressor"):
        get_spec("nope")


def test_build_stores_params_verbatim_and_refuses_unknown_ones() -> None:
    assert get_spec("hat").build(grace_period=50).grace_period == 50
    assert get_spec("arf").build(n_models=3.0).n_models == 3  # Avro doubles back to ints
    assert get_spec("logreg").build(learning_rate=0.05)[-1].optimizer.learning_rate == 0.05
    with pytest.raises(ConfigError, match="no param 'depth'"):
        get_spec("hat").build(depth=3)
    with pytest.raises(TypeError):
        get_spec("hat").params["grace_period"] = 1  # type: ignore[index]


def test_params_must_have_the_type_of_their_default() -> None:
    spec = get_spec("hoeffding-tree")
    assert spec.check_params({"grace_period": 50.0, "delta": 1, "leaf_prediction": "mc"}) == {
        "grace_period": 50, "delta": 1.0, "leaf_prediction": "mc"}
    for bad in ({"grace_period": "fifty"}, {"grace_period": 50.5}, {"grace_period": True},
                {"delta": "small"}, {"leaf_prediction": 3.0}):
        with pytest.raises(ConfigError, match="takes"):
            spec.build(**bad)


def test_the_hoeffding_tree_refuses_options_river_would_replace_silently() -> None:
    model = get_spec("hoeffding-tree").build(grace_period=20, split_criterion="gini", leaf_prediction="mc")
    assert (model.grace_period, model.split_criterion, model.leaf_prediction) == (20, "gini", "mc")
    with pytest.raises(ConfigError, match="split_criterion must be one of gini, info_gain, hellinger"):
        get_spec("hoeffding-tree").build(split_criterion="entropy")
    with pytest.raises(ConfigError, match="leaf_prediction must be one of mc, nb, nba"):
        get_spec("hoeffding-tree").build(leaf_prediction="knn")


def test_builds_are_fresh_and_seeds_reach_the_estimators() -> None:
    spec = get_spec("arf")
    assert spec.build(seed=3).seed == 3
    assert not get_spec("logreg").seeded and spec.seeded
    first, second = get_spec("logreg").build(), get_spec("logreg").build()
    first.learn_one({"a": 1.0}, True)
    assert second.predict_proba_one({"a": 1.0}) == {False: 0.5, True: 0.5}


# --- batched helpers ----------------------------------------------------------------------


def _phishing_with_strings(n: int) -> list[Row]:
    """Phishing plus a string, a boolean and a constant feature."""
    rng = random.Random(3)
    return [({**x, "channel": rng.choice(["web", "app", "pos"]), "vip": rng.random() < 0.2,
              "constant": 1.0}, bool(y))
            for x, y in datasets.Phishing().take(n)]


def _with_holes(rows: list[Row], *, share: float, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{k: (None if rng.random() < share else v) for k, v in x.items()} for x, _ in rows]


def _spy(model: Any, method: str) -> list[int]:
    calls: list[int] = []
    original = getattr(model, method)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    setattr(model, method, spy)
    return calls


@pytest.mark.parametrize("share", [0.0, 0.2])
def test_predict_proba_batch_matches_one_by_one(share: float) -> None:
    rows = _phishing_with_strings(600)
    model = _trained(get_spec("logreg"), rows[:500])
    probes = _with_holes(rows[500:], share=share)
    probes[0]["constant"] = 3.0  # unseen value of a feature with no variance
    probes[1]["channel"] = "never seen"
    calls = _spy(model, "predict_proba_many")
    batched = predict_proba_batch(model, probes)
    assert calls == [100]  # the mini-batch path was taken
    for got, x in zip(batched, probes, strict=True):
        expected = model.predict_proba_one(drop_missing(x))
        assert got.keys() == expected.keys()
        assert all(abs(got[k] - expected[k]) < 1e-9 for k in expected)


def test_a_small_batch_is_predicted_one_by_one_and_learning_is_not() -> None:
    """Below PREDICT_MANY_FROM rows the mini-batch path's fixed cost (~0.7 ms a call) is more
    than the rows' own: they go one by one, with the same answers; learn_batch keeps its
    mini-batch step whatever the size (a learn_many is not a learn_one)."""
    rows = _phishing_with_strings(600)
    model = _trained(get_spec("logreg"), rows[:500])
    small = [x for x, _ in rows[500:500 + PREDICT_MANY_FROM - 1]]
    calls = _spy(model, "predict_proba_many")
    labels, scores = labels_and_scores(model, small)
    assert calls == []  # one by one
    assert labels_and_scores(model, [x for x, _ in rows[500:500 + PREDICT_MANY_FROM]]) and calls == [PREDICT_MANY_FROM]
    for label, score, x in zip(labels, scores, small, strict=True):
        expected = model.predict_proba_one(drop_missing(x))
        assert score == {str(k): v for k, v in expected.items()}
        assert label == max(expected, key=expected.__getitem__)
    learned = _spy(model, "learn_many")
    learn_batch(model, small[:3], [y for _, y in rows[500:503]])
    assert learned == [3]


def test_predict_batch_matches_one_by_one_for_regression() -> None:
    rows = [({**x, "zone": "abc"[int(y) % 3]}, y) for x, y in _rows_for(get_spec("linreg"), 400)]
    model = _trained(get_spec("linreg"), rows[:300])
    probes = _with_holes(rows[300:], share=0.1)
    calls = _spy(model, "predict_many")
    batched = predict_batch(model, probes)
    assert calls == [100]
    for got, x in zip(batched, probes, strict=True):
        assert abs(got - model.predict_one(drop_missing(x))) < 1e-9


def test_learn_batch_with_missing_values_keeps_the_statistics_of_observed_values() -> None:
    rows = _phishing_with_strings(300)
    holey = _with_holes(rows, share=0.3)
    labels = [y for _, y in rows]
    model = get_spec("logreg").build()
    calls = _spy(model, "learn_many")
    learn_batch(model, holey, labels)
    assert calls == [300]
    encoder, reference = model[0], FeatureEncoder()
    for x in holey:
        observed: dict[Hashable, Any] = {k: v for k, v in x.items() if v is not None}
        reference.learn_one(observed)
    assert set(encoder.counts) == set(reference.counts)
    for key in reference.counts:
        assert encoder.counts[key] == reference.counts[key]
        assert encoder.means[key] == pytest.approx(reference.means[key], abs=1e-9)
        assert encoder.vars[key] == pytest.approx(reference.vars[key], abs=1e-9)
    weights = model[-1].weights
    assert weights and all(math.isfinite(w) for w in weights.values())
    assert "channel_web" in weights  # strings were one-hot encoded on the batch path


def test_models_that_do_not_read_nan_as_missing_fall_back_to_one_by_one() -> None:
    plain = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    assert supports_many(plain)
    rows = [({"a": float(i % 7), "b": None if i % 3 else 1.0}, i % 2 == 0) for i in range(200)]
    learn_batch(plain, [x for x, _ in rows], [y for _, y in rows])
    assert all(math.isfinite(v) for v in plain["StandardScaler"].vars.values())
    outputs = predict_proba_batch(plain, [x for x, _ in rows])
    assert all(math.isfinite(p) for out in outputs for p in out.values())


def test_trees_take_the_one_by_one_path_with_the_same_results() -> None:
    spec = get_spec("hat")
    rows = _rows_for(spec, 600)
    model = _trained(spec, rows[:500])
    assert not supports_many(model)
    probes = [x for x, _ in rows[500:]]
    assert predict_proba_batch(model, probes) == [model.predict_proba_one(x) for x in probes]


def test_a_feature_mixing_strings_and_numbers_falls_back_to_one_by_one() -> None:
    rows: list[dict[str, Any]] = [{"a": 1.0, "b": "x"}, {"a": "one", "b": "y"}]
    assert to_frame(rows) is None
    model = get_spec("logreg").build()
    learn_batch(model, rows, [True, False])
    assert predict_proba_batch(model, rows) == [model.predict_proba_one(x) for x in rows]


def test_learn_batch_refuses_misaligned_labels() -> None:
    with pytest.raises(ValueError, match="2 rows but 1 labels"):
        learn_batch(get_spec("logreg").build(), [{"a": 1.0}, {"a": 2.0}], [True])


def test_empty_batches() -> None:
    model: Callable[[], Any] = get_spec("logreg").build
    assert predict_proba_batch(model(), []) == []
    assert predict_batch(get_spec("linreg").build(), []) == []
    learn_batch(model(), [], [])


def test_predicting_does_not_change_the_model(spec: ModelSpec) -> None:
    rows = _rows_for(spec, 300)
    model = _trained(spec, rows)
    before = pickle.dumps(model, protocol=5)
    probes = [x for x, _ in rows[:20]] + [{"never_seen": 1.0, "never_seen_either": "x"}]
    for x in probes:
        _predict(spec, model, x)
    (predict_batch if spec.task == "regression" else predict_proba_batch)(model, probes)
    assert pickle.dumps(model, protocol=5) == before


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_labels_and_scores_are_the_most_probable_class_and_the_probabilities(name: str) -> None:
    """The scorer's output path (straight from the probability matrix where the model has a
    mini-batch path) gives what predict_proba_batch's dicts give, class names as strings."""
    spec = get_spec(name)
    rows = _rows_for(spec)
    model = _trained(spec, rows[:-100])
    probes = [x for x, _ in rows[-100:]]
    for fitted in (model, spec.build(seed=1)):  # trained, and before its first label
        labels, scores = labels_and_scores(fitted, probes)
        for label, score, proba in zip(labels, scores, predict_proba_batch(fitted, probes), strict=True):
            assert score.keys() == {str(k) for k in proba}
            assert all(abs(score[str(k)] - v) < 1e-9 for k, v in proba.items())
            assert label == (max(proba, key=proba.__getitem__) if proba else None)
