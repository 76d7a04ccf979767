"""Explanations per prediction: linear champions trained on real streams, through the scorer's core.

The reference every explanation is checked against is River's own one-by-one path: the
pipeline's ``transform_one`` gives the encoded row, the linear model's ``weights`` the
weights, so a contribution is ``weights[f] * encoded[f]``, computed here row by row.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
from river import datasets

from riverops.demo.cardgen import CardStream
from riverops.models.batch import learn_in_order, predict_proba_batch
from riverops.models.explain import explainable, predict_explained, predict_proba_explained
from riverops.models.specs import drop_missing, get_spec
from riverops.roles.scorer import ScorerCore, ScorerRole, ServingModel
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.events import Artifact, ModelVersion, PredictionEvent
from riverops.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALL = 10_000  # more than any stream here has encoded features: every contribution is listed


def _rows_phishing() -> tuple[list[dict[str, Any]], list[bool]]:
    pairs = list(datasets.Phishing())
    return [dict(x) for x, _ in pairs], [bool(y) for _, y in pairs]


def _rows_cards() -> tuple[list[dict[str, Any]], list[bool]]:
    txs = list(CardStream(events=3000, seed=5))  # numbers, booleans, one string feature
    return [dict(tx.features) for tx in txs], [tx.label for tx in txs]


STREAMS = {"phishing": _rows_phishing, "cards": _rows_cards}


@pytest.fixture(scope="module", params=sorted(STREAMS))
def stream(request: pytest.FixtureRequest) -> tuple[str, Any, list[dict[str, Any]]]:
    """(name, a logreg trained on the first 2/3 of the stream, the last 1/3 to score)."""
    rows, labels = STREAMS[request.param]()
    cut = len(rows) * 2 // 3
    model = get_spec("logreg").build(seed=1, learning_rate=0.05)
    learn_in_order(model, rows[:cut], labels[:cut])
    return request.param, model, rows[cut:]


def _record(version: int = 1, *, spec: str = "logreg", task: str = "binary") -> ModelVersion:
    return ModelVersion(model="m", version=version, stage="champion", spec=spec, task=task,  # type: ignore[arg-type]
                        artifact=Artifact(inline=b"", sha256="0" * 64, signature="0" * 64, size=0),
                        changed_by="test", reason="test", changed_at=T0)


def _events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"event_id": f"e{i}", "model": "m", "entity_id": "x", "event_time": T0 + timedelta(seconds=i),
             "features": row} for i, row in enumerate(rows)]


def _core(model: Any, top_k: int, *, spec: str = "logreg", task: str = "binary") -> ScorerCore:
    core = ScorerCore(explain_top_k=top_k)
    core.set_plan("m", champion=ServingModel(_record(spec=spec, task=task), model, "champion"))
    return core


def _reference(model: Any, row: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """(intercept, every non-zero contribution by name) of one row, River's one-by-one way."""
    linear = model[-1]
    weights = linear.weights
    encoded = model.transform_one(drop_missing(row))
    contributions = {str(f): weights.get(f, 0.0) * float(v) for f, v in encoded.items()}
    return linear.intercept, {f: c for f, c in contributions.items() if c}


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _raw(explanation: dict[str, Any]) -> float:
    return float(explanation["intercept"] + sum(c["value"] for c in explanation["contributions"])
                 + explanation["rest"])


def test_every_contribution_and_the_intercept_sum_to_the_logit_of_the_score(stream: Any) -> None:
    name, model, rows = stream
    result = _core(model, ALL).score(_events(rows))
    assert len(result.predictions) == len(rows) and not result.invalid
    worst, within = 0.0, 0
    for prediction, row in zip(result.predictions, rows, strict=True):
        explanation = prediction["explanation"]
        p = prediction["scores"]["True"]
        assert explanation["rest"] == 0.0  # nothing left out
        intercept, expected = _reference(model, row)
        assert explanation["intercept"] == intercept
        got = {c["feature"]: c["value"] for c in explanation["contributions"]}
        assert got.keys() == expected.keys()
        assert all(math.isclose(got[f], expected[f], rel_tol=1e-12, abs_tol=1e-15) for f in got)
        # 1 - p keeps the logit to 1e-9 only while p < 1 - 1e-6 (log(1e-6) * 2**-52 ~ 3e-16 / 1e-6)
        if p < 1 - 1e-6:
            within += 1
            worst = max(worst, abs(_raw(explanation) - _logit(p)))
    print(f"{name}: {within} of {len(rows)} scores below 1 - 1e-6, worst |sum - logit| {worst:.2e}")
    assert within >= 0.9 * len(rows)
    assert worst < 1e-9


def test_top_3_are_the_three_largest_contributions_sorted_and_rest_is_the_others(stream: Any) -> None:
    _, model, rows = stream
    result = _core(model, 3).score(_events(rows))
    for prediction, row in zip(result.predictions, rows, strict=True):
        explanation = prediction["explanation"]
        _, expected = _reference(model, row)
        ranked = sorted(expected.values(), key=abs, reverse=True)
        values = [c["value"] for c in explanation["contributions"]]
        assert len(values) == min(3, len(ranked))
        assert [abs(v) for v in values] == sorted((abs(v) for v in values), reverse=True)
        assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(values, ranked, strict=False))
        assert math.isclose(explanation["rest"], math.fsum(ranked[3:]), rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(_raw(explanation), _logit(prediction["scores"]["True"]),
                            rel_tol=1e-9, abs_tol=1e-9) or prediction["scores"]["True"] > 1 - 1e-6


def test_one_hot_dummies_are_named_as_the_encoder_names_them() -> None:
    rows, labels = _rows_cards()
    model = get_spec("logreg").build(seed=1)
    learn_in_order(model, rows, labels)
    (prediction,) = _core(model, ALL).score(_events([rows[0]])).predictions
    features = {c["feature"] for c in prediction["explanation"]["contributions"]}
    assert f"merchant_category_{rows[0]['merchant_category']}" in features
    assert "merchant_category" not in features and "amount" in features


def test_explanations_change_no_prediction(stream: Any) -> None:
    _, model, rows = stream
    off = _core(model, 0).score(_events(rows)).predictions
    on = _core(model, 2).score(_events(rows)).predictions
    keep = ("event_id", "version", "variant", "prediction", "scores")
    assert [{k: p[k] for k in keep} for p in on] == [{k: p[k] for k in keep} for p in off]


def test_off_means_no_field_and_null_on_the_wire(stream: Any) -> None:
    _, model, rows = stream
    predictions = _core(model, 0).score(_events(rows[:50])).predictions
    assert all("explanation" not in p for p in predictions)
    codec = SingleObjectCodec()
    for payload in codec.encode_many("PredictionEvent", predictions):
        decoded = codec.decode("PredictionEvent", payload)
        assert decoded["explanation"] is None
        assert PredictionEvent.from_avro(decoded).explanation is None


def test_explanations_survive_avro_and_the_pydantic_mirror(stream: Any) -> None:
    _, model, rows = stream
    predictions = _core(model, 4).score(_events(rows[:50])).predictions
    codec = SingleObjectCodec()
    for prediction, payload in zip(predictions, codec.encode_many("PredictionEvent", predictions),
                                   strict=True):
        decoded = codec.decode("PredictionEvent", payload)
        assert decoded["explanation"] == prediction["explanation"]
        event = PredictionEvent.from_avro(decoded)
        assert event.explanation is not None and len(event.explanation.contributions) <= 4
        assert PredictionEvent.from_avro(codec.decode("PredictionEvent", codec.encode(
            "PredictionEvent", event.to_avro()))) == event


def test_the_one_by_one_path_explains_as_the_batch_path() -> None:
    rows, labels = _rows_cards()
    model = get_spec("logreg").build(seed=1)
    learn_in_order(model, rows[:2000], labels[:2000])
    batch = rows[2000:2100]
    mixed = [*batch, {**batch[0], "amount": "n/a"}]  # a feature mixing strings and numbers
    _, batched = predict_proba_explained(model, batch, top_k=ALL)
    probas, one_by_one = predict_proba_explained(model, mixed, top_k=ALL)
    assert probas == predict_proba_batch(model, mixed)
    for a, b in zip(batched, one_by_one, strict=False):
        assert a is not None and b is not None
        assert {c["feature"] for c in a["contributions"]} == {c["feature"] for c in b["contributions"]}
        assert math.isclose(_raw(a), _raw(b), rel_tol=1e-12, abs_tol=1e-12)
    assert one_by_one[-1] is not None
    assert "amount" not in {c["feature"] for c in one_by_one[-1]["contributions"]}


def test_linreg_contributions_sum_to_the_prediction() -> None:
    pairs = list(islice(datasets.synth.Friedman(seed=3), 3000))
    rows = [{f"x{k}": v for k, v in x.items()} for x, _ in pairs]
    model = get_spec("linreg").build()
    learn_in_order(model, rows[:2000], [y for _, y in pairs[:2000]])
    result = _core(model, ALL, spec="linreg", task="regression").score(_events(rows[2000:]))
    for prediction in result.predictions:
        assert prediction["scores"] == {}
        assert abs(_raw(prediction["explanation"]) - prediction["prediction"]) < 1e-9
    values, explanations = predict_explained(model, rows[2000:2010], top_k=2)
    assert all(e is not None and len(e["contributions"]) == 2 for e in explanations)
    assert all(math.isclose(_raw(e), v, rel_tol=1e-12)  # type: ignore[arg-type]
               for e, v in zip(explanations, values, strict=True))


def test_a_tree_gets_no_explanation_and_the_core_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    pairs = list(datasets.Phishing())
    model = get_spec("hoeffding-tree").build(grace_period=50)
    learn_in_order(model, [x for x, _ in pairs[:1000]], [y for _, y in pairs[:1000]])
    assert not explainable(model)
    core = _core(model, 3, spec="hoeffding-tree")
    events = _events([dict(x) for x, _ in pairs[1000:]])
    with caplog.at_level(logging.WARNING, logger="riverops.roles.scorer"):
        first = core.score(events[:100]).predictions
        second = core.score(events[100:]).predictions
    assert len(first) + len(second) == len(events)
    assert all("explanation" not in p for p in first + second)
    said = [r for r in caplog.records if "not a linear model" in r.getMessage()]
    assert len(said) == 1 and "m v1 (hoeffding-tree" in said[0].getMessage()
    with pytest.raises(TypeError, match="not a linear model"):
        predict_proba_explained(model, [dict(pairs[0][0])], top_k=1)


def test_the_role_takes_top_k_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().scorer.explain_top_k == 0
    monkeypatch.setenv("RIVEROPS_SCORER__EXPLAIN_TOP_K", "5")
    monkeypatch.setenv("RIVEROPS_SIGNING_KEY", "test-key")  # the role's model loader wants one
    assert ScorerRole(Settings()).core.explain_top_k == 5
    with pytest.raises(ValueError):
        ScorerCore(explain_top_k=-1)


def test_explanations_stay_with_their_events_when_another_version_refuses_a_row() -> None:
    pairs = list(datasets.Phishing())
    xs, ys = [dict(x) for x, _ in pairs[:1000]], [bool(y) for _, y in pairs[:1000]]
    linear, tree = get_spec("logreg").build(), get_spec("hoeffding-tree").build(grace_period=50)
    learn_in_order(linear, xs, ys)
    learn_in_order(tree, xs, ys)
    core = ScorerCore(explain_top_k=2)
    core.set_plan("m", champion=ServingModel(_record(1), linear, "champion"),
                  shadows=[ServingModel(_record(2, spec="hoeffding-tree"), tree, "shadow")])
    rows = [dict(x) for x, _ in pairs[1000:1010]]
    rows[3] = {k: "x" for k in rows[3]}  # the tree cannot compare a string with its thresholds
    result = core.score(_events(rows))
    assert [index for index, _ in result.invalid] == [3]
    champion = [p for p in result.predictions if p["variant"] == "champion"]
    assert [p["event_id"] for p in champion] == [f"e{i}" for i in range(10) if i != 3]
    # the batch with the string row took the one-by-one path: equal to rounding, not bitwise
    _, expected = predict_proba_explained(linear, [r for i, r in enumerate(rows) if i != 3], top_k=2)
    for prediction, reference in zip(champion, expected, strict=True):
        assert reference is not None
        got = prediction["explanation"]
        assert [c["feature"] for c in got["contributions"]] == [
            c["feature"] for c in reference["contributions"]]
        assert math.isclose(_raw(got), _raw(reference), rel_tol=1e-12, abs_tol=1e-12)
    assert all("explanation" not in p for p in result.predictions if p["variant"] == "shadow")
