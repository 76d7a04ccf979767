"""LearnerCore: batched learning equals learn_batch, progressive metrics, dedupe, dead
letters (a NaN feature among them), snapshot policy and lineage."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from river import datasets, evaluate, linear_model, metrics

from riverops.models.batch import learn_batch, predict_batch, predict_proba_batch
from riverops.models.specs import get_spec
from riverops.roles.learner import LearnerCore, Snapshot, Start, coerce_label
from riverops.schemas.errors import ConfigError, InvalidEventError

PHISHING = list(datasets.Phishing())[:600]
TRUMP = list(datasets.TrumpApproval())[:300]


def feedback(i: int, x: dict[str, Any], y: Any, *, model: str = "fraud") -> dict[str, Any]:
    return {"event_id": f"e{i}", "model": model, "entity_id": "c", "event_time": i,
            "features": x, "label": y, "label_time": i, "predictions": []}


def stream(data: list[tuple[dict[str, Any], Any]], *, model: str = "fraud", start: int = 0
           ) -> list[dict[str, Any]]:
    return [feedback(i, x, y, model=model) for i, (x, y) in enumerate(data, start)]


class Starts:
    """A start callable that builds from a spec and records the names it was asked for."""

    def __init__(self, specs: dict[str, str] | None = None, parent: int | None = 4) -> None:
        self.specs = specs or {"fraud": "logreg"}
        self.parent = parent
        self.asked: list[str] = []

    def __call__(self, model: str) -> Start:
        self.asked.append(model)
        if model not in self.specs:
            raise InvalidEventError(f"unknown model {model!r}")
        spec = self.specs[model]
        return Start(get_spec(spec).build(seed=1), spec, self.parent)


def test_learns_like_learn_batch_and_scores_each_batch_before_learning() -> None:
    core = LearnerCore(Starts(), batch_size=100, mode="batch")
    records = stream(PHISHING)
    for lo in range(0, len(records), 250):  # update() calls do not align with batches
        core.update(records[lo : lo + 250])
    reference = get_spec("logreg").build(seed=1)
    accuracy, roc_auc = metrics.Accuracy(), metrics.ROCAUC()
    for lo in range(0, len(records), 250):
        chunk = PHISHING[lo : lo + 250]
        for b in range(0, len(chunk), 100):
            rows = [x for x, _ in chunk[b : b + 100]]
            labels = [y for _, y in chunk[b : b + 100]]
            for y, p in zip(labels, predict_proba_batch(reference, rows), strict=True):
                accuracy.update(y, max(p, key=lambda c: p[c]))
                roc_auc.update(y, p)
            learn_batch(reference, rows, labels)
    snap = core.snapshot("fraud")
    rows = [x for x, _ in PHISHING[:50]]
    assert predict_proba_batch(snap.estimator, rows) == predict_proba_batch(reference, rows)
    assert snap.metrics == pytest.approx({"accuracy": accuracy.get(), "roc_auc": roc_auc.get()})
    assert snap.metrics["accuracy"] > 0.8
    assert (snap.samples, snap.total_samples, snap.spec, snap.parent, snap.task) == (
        600, 600, "logreg", 4, "binary")


def test_one_learner_per_model_started_once() -> None:
    starts = Starts({"fraud": "logreg", "price": "linreg"})
    core = LearnerCore(starts, mode="batch")
    mixed = [r for pair in zip(stream(PHISHING[:100]), stream(TRUMP[:100], model="price"),
                               strict=True) for r in pair]
    result = core.update(mixed)
    core.update(stream(PHISHING[100:200], start=100))
    assert result.learned == 200 and starts.asked == ["fraud", "price"]
    assert core.models == ["fraud", "price"]
    status = {s.model: s for s in core.status()}
    assert set(status["price"].metrics) == {"mae"} and status["fraud"].samples == 200
    reference = get_spec("linreg").build()
    learn_batch(reference, [x for x, _ in TRUMP[:100]], [y for _, y in TRUMP[:100]])
    rows = [x for x, _ in TRUMP[100:110]]
    assert predict_batch(core.snapshot("price").estimator, rows) == predict_batch(reference, rows)


def test_duplicates_are_learned_once_with_bounded_memory() -> None:
    core = LearnerCore(Starts())
    records = stream(PHISHING[:10])
    first = core.update([*records, records[0]])  # a duplicate in the same batch
    again = core.update(records[:5])  # re-delivered
    assert (first.learned, first.duplicates, again.learned, again.duplicates) == (10, 1, 0, 5)
    assert core.duplicates == 6 and core.status()[0].total_samples == 10
    small = LearnerCore(Starts(), dedupe_size=3)
    small.update(records[:5])
    assert small.update(records[:1]).learned == 1  # forgotten: learned again
    assert small.update(records[4:5]).duplicates == 1
    many = LearnerCore(Starts(), dedupe_size=100)
    many.update(stream(PHISHING))  # 600 ids through a 100-id tail: the last 100 stay
    assert len(many._seen) == 100 and many._seen.nbytes == 8 * 256 + 12 * 100
    assert (many.update(stream(PHISHING[500:], start=500)).learned, many.duplicates) == (0, 100)
    assert many.update(stream(PHISHING[499:500], start=499)).learned == 1  # forgotten


def test_a_record_refused_by_the_contract_is_not_remembered() -> None:
    core = LearnerCore(Starts())
    record = stream(PHISHING[:1])[0]
    assert core.update([{**record, "label": "maybe"}]).rejected
    result = core.update([record])  # corrected and sent again under the same event_id
    assert (result.learned, result.duplicates) == (1, 0)


def test_invalid_records_are_rejected_with_reason_and_source() -> None:
    starts = Starts()
    core = LearnerCore(starts)
    x, y = PHISHING[0]
    bad = [
        feedback(1, x, "perhaps"),
        {**feedback(2, x, y), "features": None},
        feedback(3, {"a": math.inf}, y),
        {**feedback(4, x, y), "event_id": ""},
        feedback(5, x, y, model="ghost"),
        {**feedback(6, x, y), "label": None},
    ]
    good = feedback(0, x, y)
    records = [bad[0], good, *bad[1:]]
    sources = [("feedback", 0, offset) for offset in range(len(records))]
    result = core.update(records, sources=sources)
    assert result.learned == 1 and core.rejected == 6
    assert [r.source for r in result.rejected] == [sources[0], *sources[2:]]
    assert all(isinstance(r.error, InvalidEventError) for r in result.rejected)
    reasons = [str(r.error) for r in result.rejected]
    for reason, expected in zip(reasons, ["not a binary class", "no features map",
                                          "not a finite number", "without a model name",
                                          "unknown model", "has no label"], strict=True):
        assert expected in reason
    assert core.snapshot("fraud").training_data == [
        {"topic": "feedback", "partition": 0, "start": 1, "end": 2}]
    assert core.update([bad[0]]).rejected[0].record is bad[0]  # nothing was remembered


class Spy:
    """A logistic regression that records every row it is asked to learn."""

    def __init__(self) -> None:
        self.model = linear_model.LogisticRegression()
        self.learned: list[dict[str, Any]] = []

    def predict_proba_one(self, x: dict[str, Any]) -> dict[bool, float]:
        return self.model.predict_proba_one(x)  # type: ignore[no-any-return]

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        self.learned.append(dict(x))
        self.model.learn_one(x, y)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_feature_is_rejected_and_never_learned(bad: float) -> None:
    spy = Spy()
    core = LearnerCore(lambda model: Start(spy, "logreg"))
    records = [feedback(i, {"row": float(i), "x": 1.0 + i % 3}, i % 2 == 0) for i in range(20)]
    records[5] = {**records[5], "features": {"row": 5.0, "x": bad}}
    result = core.update(records, sources=[("feedback", 0, i) for i in range(20)])
    assert result.learned == 19 and [r.source for r in result.rejected] == [("feedback", 0, 5)]
    assert "not a finite number" in str(result.rejected[0].error)
    assert len(spy.learned) == 19 and all(row["row"] != 5.0 for row in spy.learned)
    assert all(math.isfinite(v) for row in spy.learned for v in row.values())
    assert spy.model.weights and all(math.isfinite(w) for w in spy.model.weights.values())
    assert core.update([records[5]]).rejected  # refused, not remembered as seen


def test_regression_labels_must_be_numbers() -> None:
    core = LearnerCore(Starts({"price": "linreg"}))
    x, y = TRUMP[0]
    result = core.update([feedback(0, x, True, model="price"), feedback(1, x, "12", model="price"),
                          feedback(2, x, y, model="price")])
    assert result.learned == 1 and len(result.rejected) == 2
    assert coerce_label("binary", "false") is False and coerce_label("multiclass", 3) == "3"
    with pytest.raises(InvalidEventError):
        coerce_label("regression", math.nan)


def test_snapshot_due_by_samples_or_time_and_counters_reset() -> None:
    core = LearnerCore(Starts(), every_samples=100, every_seconds=60.0)
    assert core.due(0.0) == []
    core.update(stream(PHISHING[:50]))
    assert core.due(1000.0) == []  # the period starts at the first due() that sees the model
    assert core.due(1059.0) == [] and core.due(1060.0) == ["fraud"]
    snap = core.snapshot("fraud", now_seconds=1060.0)
    assert snap.samples == 50 and core.due(1119.0) == []  # no sample since: never due
    core.update(stream(PHISHING)[50:150])
    assert core.due(1061.0) == ["fraud"]  # 100 samples
    second = core.snapshot("fraud")
    assert (second.samples, second.total_samples) == (100, 150)
    assert core.status()[0].samples == 0 and core.status()[0].metrics == {}
    core.update(stream(PHISHING)[150:151])
    assert core.due(5000.0) == []  # the period started at this due() call
    assert core.due(5060.0) == ["fraud"]
    with pytest.raises(KeyError):
        core.snapshot("ghost")


def test_snapshot_is_a_copy_with_cumulative_lineage() -> None:
    core = LearnerCore(Starts())
    records = stream(PHISHING[:300])
    core.update(records[:100], sources=[("feedback", 1, 500 + i) for i in range(100)])
    first = core.snapshot("fraud")
    rows = [x for x, _ in PHISHING[300:320]]
    before = predict_proba_batch(first.estimator, rows)
    # partition 0 arrives out of order: the span covers both ends
    core.update(records[100:300], sources=[("feedback", 0, 300 - i) for i in range(200)])
    second = core.snapshot("fraud")
    assert predict_proba_batch(first.estimator, rows) == before  # not the live model
    assert predict_proba_batch(second.estimator, rows) != before
    assert first.training_data == [{"topic": "feedback", "partition": 1, "start": 500, "end": 600}]
    assert second.training_data == [
        {"topic": "feedback", "partition": 0, "start": 101, "end": 301},
        {"topic": "feedback", "partition": 1, "start": 500, "end": 600},
    ]
    assert all(math.isfinite(v) for v in second.metrics.values())
    restored = pickle.loads(pickle.dumps(second))
    assert isinstance(restored, Snapshot)
    assert predict_proba_batch(restored.estimator, rows) == predict_proba_batch(
        second.estimator, rows)


def test_tree_spec_learns_one_by_one_like_progressive_val_score() -> None:
    core = LearnerCore(Starts({"fraud": "hat"}), batch_size=64)
    result = core.update(stream(PHISHING))
    snap = core.snapshot("fraud")
    expected = {
        name: evaluate.progressive_val_score(PHISHING, get_spec("hat").build(seed=1), metric).get()
        for name, metric in (("accuracy", metrics.Accuracy()), ("roc_auc", metrics.ROCAUC()))
    }
    assert result.learned == 600 and snap.samples == 600
    assert snap.metrics == pytest.approx(expected, abs=1e-12)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        LearnerCore(Starts(), every_samples=0)
    with pytest.raises(ValueError):
        LearnerCore(Starts()).update(stream(PHISHING[:2]), sources=[("feedback", 0, 0)])


def test_rows_the_model_cannot_take_are_rejected_and_the_rest_learned() -> None:
    from river import linear_model, preprocessing

    def plain(model: str) -> Start:
        return Start(preprocessing.StandardScaler() | linear_model.LogisticRegression(), "logreg")

    core = LearnerCore(plain)
    records = stream(PHISHING[:20])
    records[7] = {**records[7], "features": {**records[7]["features"], "https": "yes"}}
    result = core.update(records, sources=[("feedback", 0, i) for i in range(20)])
    assert result.learned == 19 and [r.source for r in result.rejected] == [("feedback", 0, 7)]
    assert "cannot learn" in str(result.rejected[0].error)
    reference = plain("fraud").estimator  # the batch is undone, then learned row by row
    for i, r in enumerate(records):
        if i != 7:
            reference.learn_one(r["features"], r["label"])
    snap = core.snapshot("fraud")
    rows = [x for x, _ in PHISHING[20:40]]
    assert snap.samples == 19
    assert [snap.estimator.predict_proba_one(x) for x in rows] == [
        reference.predict_proba_one(x) for x in rows]


def test_row_mode_is_rivers_progressive_validation() -> None:
    data = list(datasets.Phishing())
    core = LearnerCore(Starts(), mode="row")
    assert core.update(stream(data)).learned == len(data)
    expected = {
        name: evaluate.progressive_val_score(data, get_spec("logreg").build(), metric).get()
        for name, metric in (("accuracy", metrics.Accuracy()), ("roc_auc", metrics.ROCAUC()))
    }
    assert core.snapshot("fraud").metrics == pytest.approx(expected, abs=1e-9)
    assert round(expected["accuracy"], 4) == 0.8928


def test_a_learner_resumes_only_from_a_snapshot_that_descends_from_the_champion() -> None:
    from riverops.models.registry import Registry
    from riverops.roles.learner.role import _resumable
    from riverops.schemas.events import Artifact, Lineage

    art = Artifact(inline=b"x", sha256="0" * 64, signature="1" * 64, size=1)
    registry = Registry()

    def add(stage: str, parent: int | None) -> int:
        records = registry.new_version("fraud", spec="logreg", task="binary", artifact=art,
                                       stage=stage, changed_by="t", reason="r",  # type: ignore[arg-type]
                                       lineage=Lineage(parent=parent))
        registry.apply_all(records)
        return records[-1].version

    champion = add("champion", None)
    first = add("candidate", champion)  # a snapshot of the champion's learner
    second = add("candidate", first)  # the next one, after a resume
    other = add("candidate", None)
    assert _resumable(registry, "fraud", second, champion).version == second  # type: ignore[union-attr]
    assert _resumable(registry, "fraud", first, champion).version == first  # type: ignore[union-attr]
    assert _resumable(registry, "fraud", other, champion) is None
    assert _resumable(registry, "fraud", None, champion) is None
    assert _resumable(registry, "fraud", 99, champion) is None  # not in the registry
    assert _resumable(registry, "fraud", second, other) is None  # the champion changed since
