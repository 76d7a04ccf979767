"""OnlineCore and TimeOrderMerge: River's exact progressive validation over time-ordered events.

Features of sample i are stamped t = i, its label t = i + k. Merged in time order and fed to
OnlineCore, they must give ``progressive_val_score(..., delay=k)``'s numbers, whatever the
interleaving of the partitions' arrivals.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, stream

from riverops.models.specs import get_spec
from riverops.roles.online import Kind, OnlineCore, OnlineInput, Partition, TimeOrderMerge
from riverops.schemas.errors import ConfigError, InvalidEventError

PHISHING = list(datasets.Phishing())
TRUMP = list(datasets.TrumpApproval())
NOW = datetime(2024, 1, 1, tzinfo=UTC)
FEATURES: list[Partition] = [("features", 0), ("features", 1)]
LABELS: list[Partition] = [("labels", 0), ("labels", 1)]

Maker = Callable[[], Any]
MAKERS: dict[str, Maker] = {
    "StandardScaler|LogisticRegression": lambda: (
        preprocessing.StandardScaler() | linear_model.LogisticRegression()
    ),
    "logreg spec": lambda: get_spec("logreg").build(seed=0),
}


def features(i: int, x: dict[str, Any]) -> OnlineInput:
    record = {"event_id": f"e{i}", "model": "phishing", "entity_id": f"site-{i}",
              "event_time": i, "features": x}
    return OnlineInput("features", record, ("features", i % 2, i // 2))


def label(i: int, y: Any, *, delay: int = 0, model: str = "phishing") -> OnlineInput:
    record = {"event_id": f"e{i}", "model": model, "label": y, "label_time": i + delay}
    return OnlineInput("label", record, ("labels", i % 2, i // 2))


def partitioned(data: list[tuple[dict[str, Any], Any]], delay: int
                ) -> dict[Partition, list[tuple[int, Kind, OnlineInput]]]:
    """Each partition's records in its own (time) order, as Kafka would hold them."""
    parts: dict[Partition, list[tuple[int, Kind, OnlineInput]]] = {p: [] for p in FEATURES + LABELS}
    for i, (x, y) in enumerate(data):
        parts[FEATURES[i % 2]].append((i, "features", features(i, x)))
        parts[LABELS[i % 2]].append((i + delay, "label", label(i, y, delay=delay)))
    return parts


def arrive(parts: dict[Partition, list[tuple[int, Kind, OnlineInput]]], seed: int,
           *, release_every: float = 0.2) -> Iterator[list[OnlineInput]]:
    """A random interleaving of the partitions (each kept in order) through the merge,
    released at random moments; yields what each release gives, then the final drain."""
    rng = random.Random(seed)
    merge: TimeOrderMerge[OnlineInput] = TimeOrderMerge(parts)
    cursors = {p: 0 for p in parts}
    while live := [p for p in parts if cursors[p] < len(parts[p])]:
        p = rng.choice(live)
        t, kind, item = parts[p][cursors[p]]
        cursors[p] += 1
        merge.push(p, t, kind, item, key=item.record["event_id"])
        if rng.random() < release_every:
            yield merge.release()
    yield merge.drain()
    assert merge.pending == 0 and merge.late == 0 and merge.clamped == 0


def merged(data: list[tuple[dict[str, Any], Any]], delay: int, seed: int) -> list[OnlineInput]:
    return [item for batch in arrive(partitioned(data, delay), seed) for item in batch]


def river_scores(make: Maker, delay: int | None) -> tuple[float, float]:
    accuracy = evaluate.progressive_val_score(PHISHING, make(), metrics.Accuracy(), delay=delay)
    roc_auc = evaluate.progressive_val_score(PHISHING, make(), metrics.ROCAUC(), delay=delay)
    return accuracy.get(), roc_auc.get()


def online_scores(make: Maker, inputs: list[OnlineInput]) -> tuple[float, float]:
    core = OnlineCore(make(), version=1)
    result = core.process(inputs, predicted_at=NOW)
    assert not result.rejected and result.duplicates == 0
    assert result.learned == len(result.predictions) == len(PHISHING)
    values = core.metrics()
    return values["accuracy"], values["roc_auc"]


# -- exact equivalence with River ---------------------------------------------------------


@pytest.mark.parametrize("name", MAKERS)
def test_label_right_after_features_is_progressive_val_score(name: str) -> None:
    inputs = [item for i, (x, y) in enumerate(PHISHING) for item in (features(i, x), label(i, y))]
    accuracy, roc_auc = online_scores(MAKERS[name], inputs)
    for delay in (None, 0):
        expected = river_scores(MAKERS[name], delay)
        assert accuracy == pytest.approx(expected[0], abs=1e-9)
        assert roc_auc == pytest.approx(expected[1], abs=1e-9)
    assert round(accuracy, 4) == 0.8928 and round(roc_auc, 4) == 0.9507  # River's README


@pytest.mark.parametrize("delay", [0, 1, 10, 100])
def test_merge_reproduces_simulate_qa_order(delay: int) -> None:
    expected = [(i, y is not None)
                for i, _, y in stream.simulate_qa(PHISHING, moment=None, delay=delay, copy=False)]
    for seed in range(5):
        got = [(int(item.record["event_id"][1:]), item.kind == "label")
               for item in merged(PHISHING, delay, seed)]
        assert got == expected


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize("delay", [0, 10, 100])
def test_shuffled_arrival_gives_progressive_val_score_with_delay(name: str, delay: int) -> None:
    expected = river_scores(MAKERS[name], delay)
    for seed in range(3):
        accuracy, roc_auc = online_scores(MAKERS[name], merged(PHISHING, delay, seed))
        assert accuracy == pytest.approx(expected[0], abs=1e-9)
        assert roc_auc == pytest.approx(expected[1], abs=1e-9)


@pytest.mark.parametrize("delay", [0, 10])
def test_regression_mae_is_progressive_val_score(delay: int) -> None:
    def make() -> Any:
        return preprocessing.StandardScaler() | linear_model.LinearRegression()

    expected = evaluate.progressive_val_score(TRUMP, make(), metrics.MAE(), delay=delay).get()
    core = OnlineCore(make(), version=1, task="regression")
    result = core.process(merged(TRUMP, delay, seed=1), predicted_at=NOW)
    assert result.learned == len(TRUMP) and not result.rejected
    assert result.predictions[0]["scores"] == {}
    assert isinstance(result.predictions[0]["prediction"], float)
    assert core.metrics()["mae"] == pytest.approx(expected, abs=1e-9)


# -- the merge on its own -----------------------------------------------------------------


def test_merge_releases_below_watermark_only() -> None:
    merge: TimeOrderMerge[str] = TimeOrderMerge([("f", 0), ("l", 0)])
    merge.push(("f", 0), 1, "features", "F1", key="a")
    merge.push(("f", 0), 3, "features", "F3", key="c")
    assert merge.watermark is None and merge.release() == []
    merge.push(("l", 0), 3, "label", "Lb", key="b")  # watermark 3: F3 may still meet a label
    assert merge.release() == ["F1"] and merge.pending == 2
    merge.push(("l", 0), 4, "label", "La", key="a")
    assert merge.release() == [] and merge.watermark == 3  # features partition still at 3
    merge.push(("f", 0), 5, "features", "F5", key="e")
    assert merge.release() == ["Lb", "F3"]  # a label stamped 3 before features stamped 3
    assert merge.watermark == 4 and merge.drain() == ["La", "F5"] and merge.pending == 0


def test_merge_own_label_follows_its_features_at_equal_time() -> None:
    merge: TimeOrderMerge[str] = TimeOrderMerge()
    merge.push(("l", 0), 5, "label", "La", key="a")
    merge.push(("l", 0), 5, "label", "Lx", key="x")
    merge.push(("f", 0), 5, "features", "Fa", key="a")
    merge.push(("f", 0), 5, "features", "Fb", key="b")
    assert merge.drain() == ["Lx", "Fa", "La", "Fb"]


def test_merge_ties_break_by_partition_then_arrival() -> None:
    orders = set()
    for seed in range(20):
        rng = random.Random(seed)
        merge: TimeOrderMerge[str] = TimeOrderMerge()
        queues = {("l", 1): ["l1a", "l1b"], ("l", 0): ["l0a"], ("f", 0): ["f0a", "f0b"]}
        while live := [p for p, q in queues.items() if q]:
            p = rng.choice(live)
            kind: Kind = "label" if p[0] == "l" else "features"
            merge.push(p, 7, kind, queues[p].pop(0))
        orders.add(tuple(merge.drain()))
    assert orders == {("l0a", "l1a", "l1b", "f0a", "f0b")}


def test_merge_clamps_backwards_time_and_counts_late() -> None:
    merge: TimeOrderMerge[str] = TimeOrderMerge([("f", 0)])
    merge.push(("f", 0), 10, "features", "A")
    merge.push(("f", 0), 8, "features", "B")  # counted as stamped 10, after A
    assert merge.clamped == 1 and merge.drain() == ["A", "B"]
    merge.push(("g", 0), 5, "features", "C")  # a partition that shows up late
    assert merge.late == 1 and merge.drain() == ["C"]


def test_unregistering_an_idle_partition_lets_the_others_through() -> None:
    merge: TimeOrderMerge[str] = TimeOrderMerge([("f", 0), ("l", 0)])
    merge.push(("f", 0), 1, "features", "F1")
    merge.push(("f", 0), 2, "features", "F2")
    assert merge.release() == []
    merge.unregister(("l", 0))
    assert merge.partitions == [("f", 0)] and merge.release() == ["F1"]


# -- the online core's bookkeeping ----------------------------------------------------------


def test_duplicates_are_ignored_and_counted() -> None:
    data = PHISHING[:200]
    clean = [item for i, (x, y) in enumerate(data) for item in (features(i, x), label(i, y))]
    noisy = [item for i, (x, y) in enumerate(data)
             for item in (features(i, x), features(i, x), label(i, y), label(i, y), features(i, x))]
    reference, core = OnlineCore(MAKERS["logreg spec"](), version=1), OnlineCore(
        MAKERS["logreg spec"](), version=1)
    reference.process(clean, predicted_at=NOW)
    result = core.process(noisy, predicted_at=NOW)
    assert (len(result.predictions), result.learned, result.duplicates) == (200, 200, 600)
    assert core.metrics() == reference.metrics()
    stats = core.stats()
    assert (stats.duplicate_features, stats.duplicate_labels, stats.pending) == (400, 200, 0)


def test_bad_labels_are_rejected_with_a_reason() -> None:
    core = OnlineCore(MAKERS["logreg spec"](), version=1)
    x, y = PHISHING[0]
    result = core.process(
        [label(9, True), features(0, x), label(0, "perhaps"), label(0, y, model="other"),
         OnlineInput("features", {"event_id": "e1", "model": "phishing"}), label(0, y)],
        predicted_at=NOW,
    )
    reasons = [str(r.error) for r in result.rejected]
    assert [r.source for r in result.rejected][0] == ("labels", 1, 4)
    assert "features are unknown" in reasons[0] and "not a binary class" in reasons[1]
    assert "for model 'other'" in reasons[2] and "no features map" in reasons[3]
    assert result.learned == 1 and core.stats().invalid == 4
    assert all(isinstance(r.error, InvalidEventError) for r in result.rejected)


def test_features_the_scorer_refuses_are_neither_predicted_on_nor_learned() -> None:
    core = OnlineCore(MAKERS["logreg spec"](), version=1)
    x, y = PHISHING[0]
    nan = {**x, next(iter(x)): float("nan")}
    result = core.process([features(0, nan), label(0, y)], predicted_at=NOW)
    assert result.predictions == [] and result.learned == 0
    assert "nan" in str(result.rejected[0].error) and "unknown" in str(result.rejected[1].error)
    assert core.stats().invalid == 2 and core.metrics() == {}


def test_prediction_event_fields() -> None:
    core = OnlineCore(MAKERS["logreg spec"](), version=7)
    core.process([features(0, PHISHING[0][0]), label(0, True)], predicted_at=NOW)
    event = core.predict(features(1, PHISHING[1][0]).record, predicted_at=NOW, latency=0.25)
    assert event is not None
    assert set(event) == {"event_id", "model", "version", "variant", "prediction", "scores",
                          "latency", "event_time", "predicted_at"}
    assert (event["version"], event["variant"], event["latency"]) == (7, "online", 0.25)
    assert set(event["scores"]) == {"False", "True"} and event["event_time"] == 1
    assert event["prediction"] is max((False, True), key=lambda c: event["scores"][str(c)])


def test_oldest_pending_features_are_evicted() -> None:
    core = OnlineCore(MAKERS["logreg spec"](), version=1, max_pending=2)
    inputs = [features(i, x) for i, (x, _) in enumerate(PHISHING[:3])]
    result = core.process([*inputs, label(0, True), label(2, True)], predicted_at=NOW)
    assert core.stats().evicted == 1 and result.learned == 1 and len(result.rejected) == 1
    with pytest.raises(ConfigError):
        OnlineCore(MAKERS["logreg spec"](), version=1, max_pending=0)


def test_model_errors_are_rejected_not_raised() -> None:
    # the plain StandardScaler scores a string as 0 but fails to learn it
    core = OnlineCore(MAKERS["StandardScaler|LogisticRegression"](), version=1)
    core.process([features(0, {"a": 1.0}), label(0, True)], predicted_at=NOW)
    result = core.process([features(1, {"a": "text"}), label(1, True)], predicted_at=NOW)
    assert len(result.predictions) == 1 and result.learned == 0
    assert "failed to learn" in str(result.rejected[0].error)
    assert core.stats().pending == 0 and core.metrics()["accuracy"] == 0.0
