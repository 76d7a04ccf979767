"""The synthetic card stream: determinism, contracts, late labels, and a drift that matters."""

from __future__ import annotations

import bisect
import collections
import itertools
import statistics
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from riverops.demo.cardgen import CATEGORIES, FEATURE_NAMES, CardStream, Transaction, merged_events
from riverops.models.specs import get_spec
from riverops.roles.monitor.drift import ConceptDriftDetector
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.errors import ConfigError
from riverops.schemas.events import FeatureEvent, LabelEvent

EVENTS, DRIFT_AT = 60_000, 30_000
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def drifting() -> list[Transaction]:
    return list(CardStream(events=EVENTS, drift_at=DRIFT_AT, seed=42))


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Exact ROC AUC (Mann-Whitney, ties averaged).

    Not River's ROCAUC: its default 10 thresholds put nearly every fraud score (< 0.1)
    in one bucket and read ~0.5-0.85 where the exact figure is ~0.95.
    """
    ranks = pd.Series(scores).rank().tolist()
    positives = sum(labels)
    negatives = len(labels) - positives
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def train(transactions: Iterable[Transaction]) -> Any:
    model = get_spec("logreg").build()
    for tx in transactions:
        model.learn_one(tx.features, tx.label)
    return model


def evaluate(model: Any, transactions: Sequence[Transaction]) -> tuple[float, float]:
    """(accuracy at 0.5, exact ROC AUC) of ``model`` on ``transactions``."""
    labels = [tx.label for tx in transactions]
    scores = [model.predict_proba_one(tx.features).get(True, 0.0) for tx in transactions]
    accuracy = sum((s >= 0.5) == y for s, y in zip(scores, labels, strict=True)) / len(labels)
    return accuracy, roc_auc(labels, scores)


def test_same_seed_same_stream_and_reiterable() -> None:
    stream = CardStream(events=3000, drift_at=1500, seed=7)
    first = list(stream)
    assert first == list(stream) == list(CardStream(events=3000, drift_at=1500, seed=7))
    other = list(CardStream(events=3000, drift_at=1500, seed=8))
    assert [tx.features for tx in first] != [tx.features for tx in other]
    assert [tx.event_id for tx in first] == [f"tx{i:07d}" for i in range(3000)]
    assert [tx.after_drift for tx in first] == [i >= 1500 for i in range(3000)]


def test_features_have_the_promised_names_and_types() -> None:
    txs = list(CardStream(events=5000, seed=1, cards=300))
    for tx in txs:
        assert tuple(tx.features) == FEATURE_NAMES
        assert all(isinstance(v, float | bool | str) for v in tx.features.values())
        assert tx.features["merchant_category"] in CATEGORIES
        f = {k: v for k, v in tx.features.items() if isinstance(v, float)}
        assert f["amount"] > 0 and 0 <= f["hour"] < 24 and f["tx_count_1h"] <= f["tx_count_24h"]
        assert isinstance(tx.features["is_foreign"], bool)
        assert tx.label_time >= tx.event_time
    assert len({tx.entity_id for tx in txs}) > 250
    assert all(a.event_time <= b.event_time for a, b in itertools.pairwise(txs))


def test_velocity_features_follow_each_cards_own_history() -> None:
    """After the first simulated day (the warm history), counts and gaps match the stream."""
    txs = list(CardStream(events=20_000, seed=3, cards=500))
    seen: dict[str, list[datetime]] = collections.defaultdict(list)
    checked = 0
    for tx in txs:
        times = seen[tx.entity_id]
        if tx.event_time - txs[0].event_time > DAY and times:
            t = tx.event_time
            in_day = len(times) - bisect.bisect_right(times, t - DAY)
            in_hour = len(times) - bisect.bisect_right(times, t - timedelta(hours=1))
            assert tx.features["tx_count_24h"] == in_day
            assert tx.features["tx_count_1h"] == in_hour
            gap = (t - times[-1]).total_seconds()
            assert tx.features["seconds_since_last"] == pytest.approx(gap, abs=0.002)
            checked += 1
        times.append(tx.event_time)
    assert checked > 10_000


def test_time_scale_compresses_timestamps_only() -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    slow = list(CardStream(events=500, seed=5, start=start))
    fast_stream = CardStream(events=500, seed=5, start=start, time_scale=100.0)
    fast = list(fast_stream)
    assert [tx.features for tx in slow] == [tx.features for tx in fast]
    for a, b in zip(slow, fast, strict=True):
        assert (b.event_time - start) * 100 == pytest.approx(a.event_time - start, abs=timedelta(seconds=0.1))
        assert (b.label_time - start) * 100 == pytest.approx(a.label_time - start, abs=timedelta(seconds=0.1))
    assert fast_stream.events_per_second == pytest.approx(100 * 2000 * 3 / 86_400)
    by_rate = CardStream(events=10, events_per_second=fast_stream.events_per_second)
    assert by_rate.time_scale == pytest.approx(100.0)


@pytest.mark.parametrize(
    "options",
    [{"fraud_rate": 1.0}, {"cards": 0}, {"drift_at": -1}, {"time_scale": 0.0},
     {"time_scale": 2.0, "events_per_second": 10.0}, {"events_per_second": -1.0}],
)  # fmt: skip
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        CardStream(**options)


def test_fraud_rate_before_and_after_the_drift(drifting: list[Transaction]) -> None:
    before = statistics.mean(tx.label for tx in drifting[:DRIFT_AT])
    after = statistics.mean(tx.label for tx in drifting[DRIFT_AT:])
    assert 0.01 <= before <= 0.02
    assert 0.025 <= after <= 0.05
    assert statistics.mean(tx.label for tx in CardStream(events=20_000, fraud_rate=0.0)) == 0


def test_label_delays_are_minutes_with_a_chargeback_tail(drifting: list[Transaction]) -> None:
    delays = [(tx.label_time - tx.event_time).total_seconds() for tx in drifting]
    fraud = [d for d, tx in zip(delays, drifting, strict=True) if tx.label]
    assert 60 <= statistics.median(delays) <= 300
    assert 0.005 <= sum(d > 86_400 for d in delays) / len(delays) <= 0.02
    assert 0.01 <= sum(d > 86_400 for d in fraud) / len(fraud) <= 0.12
    assert sum(d < 3600 for d in delays) / len(delays) > 0.95
    assert 0 <= min(delays) and max(delays) <= 30 * 86_400 + 1


def test_merged_events_are_valid_time_ordered_and_interleaved() -> None:
    stream = CardStream(events=3000, seed=11, cards=200, events_per_second=50.0)
    items = list(merged_events(stream, model="fraud"))
    codec = SingleObjectCodec()
    times: list[datetime] = []
    feature_at: dict[str, datetime] = {}
    labels: list[str] = []
    for kind, record in items:
        if kind == "features":
            event = FeatureEvent.model_validate(record)
            assert codec.decode("FeatureEvent", codec.encode("FeatureEvent", record)) == event.to_avro()
            feature_at[event.event_id] = event.event_time
            times.append(event.event_time)
        else:
            label = LabelEvent.model_validate(record)
            assert codec.decode("LabelEvent", codec.encode("LabelEvent", record)) == label.to_avro()
            assert label.label_time >= feature_at[label.event_id]
            labels.append(label.event_id)
            times.append(label.label_time)
    assert times == sorted(times)
    assert sorted(labels) == sorted(feature_at) and len(feature_at) == 3000
    assert labels != sorted(labels)  # labels arrive in another order than the events
    kinds = [kind for kind, _ in items]
    assert kinds.index("label") < len(feature_at)  # and interleave with the features
    cut = list(merged_events(stream, late_labels=False))
    last = max(feature_at.values())
    assert all(r["label_time"] < last for kind, r in cut if kind == "label")
    assert 0 < len(items) - len(cut) < 100


def test_empty_stream() -> None:
    assert list(merged_events(CardStream(events=0))) == []


def test_drift_defeats_the_old_model_and_retraining_recovers(drifting: list[Transaction]) -> None:
    pre, post = drifting[:DRIFT_AT], drifting[DRIFT_AT:]
    old = train(pre[:24_000])
    old_accuracy_pre, old_auc_pre = evaluate(old, pre[24_000:])
    tail = post[20_000:]
    old_accuracy_post, old_auc_post = evaluate(old, tail)
    new_accuracy_post, new_auc_post = evaluate(train(post[:20_000]), tail)

    assert old_auc_pre > 0.85
    assert old_auc_post < old_auc_pre - 0.3  # the new fraud looks safe to the old model
    assert old_accuracy_post < old_accuracy_pre - 0.01
    assert new_auc_post > 0.9 and new_accuracy_post > old_accuracy_post + 0.01


def test_old_models_error_rises_and_adwin_sees_it(drifting: list[Transaction]) -> None:
    old = train(drifting[:24_000])
    detector = ConceptDriftDetector("ADWIN")
    errors, rising = [], []
    for index, tx in enumerate(drifting[24_000:], start=24_000):
        error = float((old.predict_proba_one(tx.features).get(True, 0.0) >= 0.5) != tx.label)
        errors.append(error)
        alarm = detector.update(error)
        if alarm is not None and alarm.rising:
            rising.append(index)
    before = statistics.mean(errors[: DRIFT_AT - 24_000])
    after = statistics.mean(errors[DRIFT_AT - 24_000 :])
    assert after > 2 * before
    assert rising and DRIFT_AT <= rising[0] < DRIFT_AT + 5000
