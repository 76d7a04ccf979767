"""MonitorCore: rolling metrics equal River's on the same outcomes, dedupe, windows, drift."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from river import linear_model, metrics, preprocessing, tree
from river.datasets import synth

from riverops.roles.monitor import DataDriftOptions, MonitorCore
from riverops.roles.monitor.windows import MetricSet, Outcome
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import DriftEvent, MetricsEvent

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CODEC = SingleObjectCodec()


def made(
    prediction: Any = None,
    p: float | None = None,
    *,
    version: int = 1,
    variant: str = "champion",
    scores: dict[str, float] | None = None,
) -> dict[str, Any]:
    if scores is None:
        scores = {} if p is None else {"True": p, "False": 1.0 - p}
    return {"version": version, "variant": variant, "prediction": prediction, "scores": scores}


def feedback(
    event_id: str,
    label: Any,
    predictions: list[dict[str, Any]],
    *,
    model: str = "fraud",
    at: float = 0.0,
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    t = T0 + timedelta(seconds=at)
    return {
        "event_id": event_id,
        "model": model,
        "entity_id": "c1",
        "event_time": t,
        "features": {"x": 1.0} if features is None else features,
        "label": label,
        "label_time": t,
        "predictions": predictions,
    }


def check_contract(
    events: list[dict[str, Any]], model: type[MetricsEvent] | type[DriftEvent]
) -> None:
    """Each dict validates with the pydantic mirror and survives the codec."""
    for event in events:
        model.from_avro(event)
        decoded = CODEC.decode(model.schema_name, CODEC.encode(model.schema_name, event))
        assert model.from_avro(decoded) == model.from_avro(event)


def binary_stream(n: int, seed: int = 0) -> list[tuple[bool, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.random() < 0.4
        p = min(max(rng.gauss(0.65 if label else 0.35, 0.2), 0.0), 1.0)
        out.append((label, p))
    return out


def by_kind(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["window_kind"]: e for e in events}


def test_binary_metrics_equal_rivers_on_the_same_outcomes() -> None:
    stream = binary_stream(60)
    core = MonitorCore(data_drift=None)
    assert (
        core.update(
            [feedback(f"e{i}", y, [made(p >= 0.5, p)], at=i) for i, (y, p) in enumerate(stream)]
        )
        == []
    )
    expected: dict[str, Any] = {
        "accuracy": metrics.Accuracy(),
        "precision": metrics.Precision(),
        "recall": metrics.Recall(),
        "f1": metrics.F1(),
        "roc_auc": PairwiseAUC(),
        "log_loss": metrics.LogLoss(),
    }
    for y, p in stream:
        for name, metric in expected.items():
            metric.update(y, p if name in ("roc_auc", "log_loss") else p >= 0.5)
    events = core.metrics_events(T0 + timedelta(seconds=60))
    assert [e["window_kind"] for e in events] == ["count", "time"]
    got = by_kind(events)["count"]["metrics"]
    for name, metric in expected.items():
        assert got[name] == pytest.approx(metric.get()), name
    assert got["accuracy"] == pytest.approx(sum((p >= 0.5) == y for y, p in stream) / 60)
    assert got["window_samples"] == 60 and by_kind(events)["count"]["samples"] == 60
    check_contract(events, MetricsEvent)


class PairwiseAUC:
    """The ROC AUC by its definition: P(score of a positive > score of a negative)."""

    def __init__(self) -> None:
        self.pairs: list[tuple[bool, float]] = []

    def update(self, y: bool, p: float) -> None:
        self.pairs.append((y, p))

    def get(self) -> float:
        pos = [p for y, p in self.pairs if y]
        neg = [p for y, p in self.pairs if not y]
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
        return wins / (len(pos) * len(neg))


def test_count_window_keeps_the_last_outcomes() -> None:
    stream = binary_stream(50, seed=3)
    core = MonitorCore(window_size=20, data_drift=None)
    core.update([feedback(f"e{i}", y, [made(None, p)], at=i) for i, (y, p) in enumerate(stream)])
    auc = PairwiseAUC()
    for y, p in stream[-20:]:
        auc.update(y, p)
    got = by_kind(core.metrics_events(T0))["count"]
    assert got["metrics"]["roc_auc"] == pytest.approx(auc.get())
    assert got["metrics"]["accuracy"] == pytest.approx(
        sum((p >= 0.5) == y for y, p in stream[-20:]) / 20
    )
    assert got["samples"] == 50 and got["window_size"] == 20.0


def test_duplicates_do_not_double_count() -> None:
    core = MonitorCore(data_drift=None)
    batch = [feedback("a", True, [made(True, 0.9)]), feedback("b", False, [made(True, 0.8)])]
    core.update([*batch, batch[0]])
    core.update(batch)  # redelivered after a restart
    [row] = core.status()
    assert row.samples == 2 and row.metrics["count"]["accuracy"] == 0.5
    assert core.duplicates == 3
    # the same event id under another model is another event
    core.update([feedback("a", True, [made(True, 0.9)], model="other")])
    assert {(r.model, r.samples) for r in core.status()} == {("fraud", 2), ("other", 1)}


def test_dedupe_memory_is_bounded() -> None:
    core = MonitorCore(dedupe_size=2, data_drift=None)
    core.update([feedback(e, True, [made(True)]) for e in ("a", "b", "c")])
    core.update([feedback("c", True, [made(True)]), feedback("a", True, [made(True)])])
    assert core.duplicates == 1  # "a" was forgotten, "c" was not
    assert len(core._seen) == 2


def test_variants_and_versions_are_kept_apart() -> None:
    core = MonitorCore(data_drift=None)
    core.update(
        [
            feedback(
                f"e{i}",
                i % 2 == 0,
                [
                    made(i % 2 == 0, version=3),
                    made(i % 2 == 1, version=4, variant="challenger"),
                    made(True, version=4, variant="shadow"),
                ],
            )
            for i in range(10)
        ]
    )
    rows = {(r.version, r.variant): r for r in core.status()}
    assert set(rows) == {(3, "champion"), (4, "challenger"), (4, "shadow")}
    assert rows[3, "champion"].metrics["count"]["accuracy"] == 1.0
    assert rows[4, "challenger"].metrics["count"]["accuracy"] == 0.0
    assert rows[4, "shadow"].metrics["count"]["accuracy"] == 0.5
    assert all(r.samples == 10 for r in rows.values())


def test_time_windows_expire_old_outcomes() -> None:
    core = MonitorCore(time_window=60.0, data_drift=None)
    core.update([feedback(f"old{i}", True, [made(True)], at=i) for i in range(10)])
    core.update([feedback(f"new{i}", True, [made(False)], at=100 + i) for i in range(5)])
    core.update([feedback("late", True, [made(True)], at=20)])  # behind the window: count only
    events = by_kind(core.metrics_events(T0 + timedelta(seconds=104)))
    assert events["time"]["metrics"]["window_samples"] == 5
    assert events["time"]["metrics"]["accuracy"] == 0.0
    assert events["time"]["window_size"] == 60.0
    assert events["count"]["metrics"]["accuracy"] == pytest.approx(11 / 16)
    # with no new labels the window still ends at `now`: half of it, then all of it, expires
    partial = by_kind(core.metrics_events(T0 + timedelta(seconds=162)))
    assert partial["time"]["metrics"]["window_samples"] == 2
    later = core.metrics_events(T0 + timedelta(hours=1))
    assert [e["window_kind"] for e in later] == ["count"]
    assert core.watermark == T0 + timedelta(seconds=104)
    check_contract(later, MetricsEvent)


def test_multiclass_metrics_equal_rivers() -> None:
    rng = random.Random(5)
    classes = ["cat", "dog", "owl"]
    core = MonitorCore(data_drift=None)
    acc, f1, ce = metrics.Accuracy(), metrics.MacroF1(), metrics.CrossEntropy()
    records = []
    for i in range(40):
        y = rng.choice(classes)
        raw = {c: rng.random() + (1.0 if c == y else 0.0) for c in classes}
        scores = {c: v / sum(raw.values()) for c, v in raw.items()}
        guess = max(scores, key=lambda c: scores[c])
        records.append(feedback(f"e{i}", y, [made(None, scores=scores)]))
        acc.update(y, guess)
        f1.update(y, guess)
        ce.update(y, scores)
    core.update(records)
    [row] = core.status()
    assert row.task == "multiclass"
    got = row.metrics["count"]
    assert got["accuracy"] == pytest.approx(acc.get())
    assert got["macro_f1"] == pytest.approx(f1.get())
    assert got["log_loss"] == pytest.approx(ce.get())


def test_regression_metrics_equal_rivers() -> None:
    rng = random.Random(6)
    core = MonitorCore(tasks={"price": "regression"}, data_drift=None)
    mae, rmse, r2 = metrics.MAE(), metrics.RMSE(), metrics.R2()
    records = []
    for i in range(30):
        y = rng.gauss(10, 3)
        yhat = y + rng.gauss(0, 1)
        records.append(feedback(f"e{i}", y, [made(yhat)], model="price"))
        for metric in (mae, rmse, r2):
            metric.update(y, yhat)
    core.update(records)
    got = core.status()[0].metrics["count"]
    assert (got["mae"], got["rmse"], got["r2"]) == pytest.approx((mae.get(), rmse.get(), r2.get()))


def test_binary_labels_and_scores_in_other_spellings() -> None:
    core = MonitorCore(tasks={"m": "binary"}, data_drift=None)
    core.update(
        [
            feedback("a", 1.0, [made(None, scores={"0": 0.2, "1": 0.8})], model="m"),
            feedback("b", "false", [made(None, scores={"False": 0.3})], model="m"),
            feedback("c", 0, [made(None)], model="m"),  # nothing to score
        ]
    )
    [row] = core.status()
    assert (row.samples, row.unscored) == (2, 1)
    assert row.metrics["count"]["accuracy"] == 0.5  # b: P(True) = 0.7 -> True, label False


def test_invalid_records_change_nothing_or_go_to_on_invalid() -> None:
    core = MonitorCore(data_drift=None)
    good, bad = feedback("a", True, [made(True)]), feedback("b", True, [made("maybe")])
    nan = feedback("c", True, [made(True)], features={"x": math.inf})  # the scorer's rule
    for refused_record in (bad, nan):
        with pytest.raises(InvalidEventError):
            core.update([refused_record])
    assert core.status() == [] and core.duplicates == 0
    refused: list[tuple[str, str]] = []
    core.update(
        [bad, nan, good], on_invalid=lambda r, exc: refused.append((r["event_id"], type(exc).__name__))
    )
    assert refused == [("b", "InvalidEventError"), ("c", "InvalidEventError")]
    assert [r.samples for r in core.status()] == [1]
    with pytest.raises(ConfigError):  # DDM takes 0/1 errors: not the log-loss
        MonitorCore(detector="DDM")
    ddm = MonitorCore(detector="DDM", signals={"binary": ("positive_error",), "multiclass": ("error",)})
    with pytest.raises(ConfigError):  # nor a regression's absolute error
        ddm.update([feedback("r", 2.5, [made(2.0)], model="price")])
    with pytest.raises(ConfigError):
        MonitorCore(signals={"regression": ("log_loss",)})


def test_non_finite_metric_values_are_left_out() -> None:
    class Broken:
        def update(self, *args: Any) -> None: ...
        def revert(self, *args: Any) -> None: ...
        def get(self) -> float:
            return math.nan

    metric_set = MetricSet("regression")
    metric_set._labels["r2"] = Broken()
    metric_set.update(Outcome(1.0, 2.0, None, 1.0))
    assert "r2" not in metric_set.values() and metric_set.values()["mae"] == 1.0


def agrawal_feedback(seed: int, n: int, drift_at: int) -> list[dict[str, Any]]:
    """Champion predictions of StandardScaler|LogisticRegression on Agrawal 0 -> 2."""
    before = synth.Agrawal(classification_function=0, seed=seed).take(drift_at)
    after = synth.Agrawal(classification_function=2, seed=seed + 1000).take(n - drift_at)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    records = []
    for i, (x, y) in enumerate([*before, *after]):
        p = model.predict_proba_one(x).get(True, 0.0)
        records.append(feedback(f"e{i}", y, [made(p >= 0.5, p, version=2)], at=i, features=x))
        model.learn_one(x, y)
    return records


def tree_feedback(seed: int, n: int, drift_at: int) -> list[dict[str, Any]]:
    """Champion predictions of a HoeffdingTreeClassifier (which learns both concepts, where
    a linear model stays near the majority class) on Agrawal 0 -> 2."""
    before = synth.Agrawal(classification_function=0, seed=seed).take(drift_at)
    after = synth.Agrawal(classification_function=2, seed=seed + 1000).take(n - drift_at)
    model = tree.HoeffdingTreeClassifier()
    records = []
    for i, (x, y) in enumerate([*before, *after]):
        p = model.predict_proba_one(x).get(1, 0.0)
        records.append(feedback(f"e{i}", bool(y), [made(p >= 0.5, p, version=2)], at=i, features=x))
        model.learn_one(x, y)
    return records


@pytest.fixture(scope="module")
def tree_records() -> list[dict[str, Any]]:
    return tree_feedback(seed=4, n=3000, drift_at=2000)


def test_concept_drift_alarms_come_out_as_drift_events_naming_their_signal(
    tree_records: list[dict[str, Any]],
) -> None:
    core = MonitorCore(data_drift=None)
    drift = [e for start in range(0, 3000, 500) for e in core.update(tree_records[start : start + 500])]
    assert drift and all((e["kind"], e["detector"], e["version"], e["variant"])
                         == ("concept", "ADWIN", 2, "champion") for e in drift)
    first = drift[0]
    assert 2000 < first["samples"] <= 2100  # the switch, seen within 100 labelled events
    assert first["signal"] in ("positive_error", "log_loss")
    assert all(e["statistic"] >= 1.2 * e["threshold"] for e in drift)  # min_relative_rise
    assert first["detected_at"] == T0 + timedelta(seconds=first["samples"] - 1)
    check_contract(drift, DriftEvent)
    assert DriftEvent.from_avro(first).signal == first["signal"]
    [row] = core.status()
    assert (row.drift_alarms, row.detector, row.signals) == (len(drift), "ADWIN",
                                                             ("positive_error", "log_loss"))


def test_the_signals_are_chosen_per_task(tree_records: list[dict[str, Any]]) -> None:
    core = MonitorCore(signals={"binary": ("error", "negative_error")}, data_drift=None)
    drift = core.update(tree_records)
    assert drift and {e["signal"] for e in drift} <= {"error", "negative_error"}
    assert 2000 < drift[0]["samples"] <= 2200
    assert core.status()[0].signals == ("error", "negative_error")
    # with no rule every rise is published; a strict one holds back the smaller rises
    loose, strict = (MonitorCore(min_relative_rise=rise, rise_z=z, data_drift=None)
                     for rise, z in ((0.0, 0.0), (5.0, 3.0)))
    published = [core.update(tree_records) for core in (loose, strict)]
    assert all(e["statistic"] >= 6.0 * e["threshold"] for e in published[1])
    assert not all(e["statistic"] >= 6.0 * e["threshold"] for e in published[0])
    assert strict.status()[0].ignored_alarms > loose.status()[0].ignored_alarms


def test_data_drift_alarms_per_feature_against_the_champion() -> None:
    rng = random.Random(8)
    options = DataDriftOptions(reference_size=200, window_size=200, every=50)
    core = MonitorCore(data_drift=options)
    preds = [made(True, version=4, variant="challenger"), made(True, version=2)]
    records = [
        feedback(
            f"e{i}", True, preds, features={"x": rng.gauss(3.0 if i >= 400 else 0.0, 1.0), "k": "a"},
            at=i * 0.1,  # an evaluation every 50 events is 5 s of label time: past min_seconds
        )
        for i in range(800)
    ]
    drift = core.update(records)
    assert {(e["kind"], e["feature"], e["detector"]) for e in drift} == {
        ("data", "x", "PSI"),
        ("data", "x", "KS"),
    }
    assert all((e["version"], e["variant"]) == (2, "champion") for e in drift)
    assert all(e["statistic"] > e["threshold"] for e in drift)
    check_contract(drift, DriftEvent)
    scores = core.data_drift_scores()["fraud"]
    assert scores["x"]["PSI"] > 0.2 and scores["k"]["PSI"] < 0.01


def test_the_core_pickles_for_checkpoints_and_resumes_identically() -> None:
    records = agrawal_feedback(seed=4, n=3000, drift_at=2000)
    core = MonitorCore(data_drift=DataDriftOptions(reference_size=500, window_size=500))
    core.update(records[:2500])
    copy = pickle.loads(pickle.dumps(core))
    assert copy.update(records[2500:]) == core.update(records[2500:])
    assert copy.status() == core.status()
    assert copy.data_drift_scores() == core.data_drift_scores()
