"""TimeWindow's bucket sums against the window that kept every outcome, on real streams.

The reference is the time window as it was before buckets: every outcome kept in label time
order and reverted from a River MetricSet when it leaves. Real River models score real
streams (Agrawal, RandomRBF, Friedman); label times run at a steady rate with jitter, so
outcomes arrive out of order and some arrive behind the window. At window ends on a bucket
boundary the two must agree to 1e-12 on every metric (ROC AUC included while the buckets
keep their scores); elsewhere the bucketed window is the one of the boundary before.
"""

from __future__ import annotations

import bisect
import collections
import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
from river import linear_model, naive_bayes, preprocessing
from river.datasets import synth

from riverops.models.metrics import ExactROCAUC
from riverops.roles.monitor.auc import EXACT_SCORES, Scores, roc_auc, tie_share
from riverops.roles.monitor.windows import MetricSet, Outcome, TimeWindow, outcome_of
from riverops.schemas.errors import ConfigError
from riverops.schemas.events import Task

T0 = 1_767_225_600.0  # 2026-01-01 in epoch seconds


class EveryOutcome:
    """The time window before buckets: each outcome kept, reverted when it leaves."""

    def __init__(self, period: float, task: Task) -> None:
        self.period = period
        self.obj = MetricSet(task)
        self._times: collections.deque[float] = collections.deque()
        self._items: collections.deque[Outcome] = collections.deque()
        self._end = -math.inf

    def update(self, t: float, outcome: Outcome) -> None:
        self.expire(t)
        if t <= self._end - self.period:
            return
        i = len(self._times)
        if self._times and t < self._times[-1]:
            i = bisect.bisect_right(self._times, t)
        self._times.insert(i, t)
        self._items.insert(i, outcome)
        self.obj.update(outcome)

    def expire(self, end: float) -> None:
        if end <= self._end:
            return
        self._end = end
        while self._times and self._times[0] <= end - self.period:
            self._times.popleft()
            self.obj.revert(self._items.popleft())


def binary_outcomes(n: int, seed: int) -> Iterator[Outcome]:
    """Progressive outcomes of a scaled logistic regression on Agrawal (function 2)."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in synth.Agrawal(classification_function=2, seed=seed).take(n):
        p = model.predict_proba_one(x).get(True, 0.5)
        outcome = outcome_of("binary", bool(y), {"prediction": None, "scores": {"True": p, "False": 1 - p}})
        assert outcome is not None
        yield outcome
        model.learn_one(x, y)


def multiclass_outcomes(n: int, seed: int) -> Iterator[Outcome]:
    """Progressive outcomes of Gaussian naive Bayes on a 3-class RandomRBF."""
    model = naive_bayes.GaussianNB()
    for i, (x, y) in enumerate(synth.RandomRBF(seed_model=seed, seed_sample=seed, n_classes=3).take(n)):
        scores = {str(c): p for c, p in model.predict_proba_one(x).items()}
        prediction = None if i % 7 == 0 else model.predict_one(x)  # some carry scores only
        outcome = outcome_of("multiclass", y, {"prediction": prediction, "scores": scores})
        if outcome is not None:
            yield outcome
        model.learn_one(x, y)


def regression_outcomes(n: int, seed: int) -> Iterator[Outcome]:
    """Progressive outcomes of a scaled linear regression on Friedman."""
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    for x, y in synth.Friedman(seed=seed).take(n):
        outcome = outcome_of("regression", y, {"prediction": model.predict_one(x), "scores": {}})
        assert outcome is not None
        yield outcome
        model.learn_one(x, y)


STREAMS = {"binary": binary_outcomes, "multiclass": multiclass_outcomes, "regression": regression_outcomes}


def timed(outcomes: Iterator[Outcome], rate: float, jitter: float, seed: int) -> list[tuple[float, Outcome]]:
    rng = random.Random(seed)
    return [(T0 + i / rate + rng.uniform(-jitter, jitter), o) for i, o in enumerate(outcomes)]


def assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_equal_to_every_outcome_at_bucket_boundaries(task: Task) -> None:
    """60-s windows of 60 one-second buckets over 4000 outcomes at 25/s, jitter 3 s."""
    stream = timed(STREAMS[task](4000, seed=3), rate=25.0, jitter=3.0, seed=1)
    window, reference = TimeWindow(60.0, task, buckets=60), EveryOutcome(60.0, task)
    compared = 0
    next_end = math.ceil(stream[0][0]) + 5
    for t, outcome in stream:
        while t > next_end:  # end the window on a boundary before the next outcome
            window.expire(next_end)
            reference.expire(next_end)
            assert window.n == reference.obj.n
            assert_same(window.values(), reference.obj.values())
            compared += 1
            next_end += 7
        window.update(t, outcome)
        reference.update(t, outcome)
        assert len(window._order) <= 61
    assert compared > 20 and reference.obj.n > 1000


def test_between_boundaries_the_window_starts_at_the_boundary_before() -> None:
    """Ends between boundaries: the bucketed window holds exactly the outcomes in
    (floor(end - period), end] (0.5-s buckets here)."""
    stream = timed(binary_outcomes(3000, seed=5), rate=40.0, jitter=0.0, seed=2)
    window = TimeWindow(30.0, "binary", buckets=60)
    for k, (t, outcome) in enumerate(stream, 1):
        window.update(t, outcome)
        if k % 250 == 0:
            start = math.floor((t - 30.0) * 2) / 2
            inside = MetricSet("binary")
            for u, o in stream[:k]:
                if u > start:
                    inside.update(o)
            assert window.n == inside.n >= min(k, 30 * 40)
            assert_same(window.values(), inside.values())


def test_late_outcomes_behind_the_window_are_dropped_and_an_empty_window_reads_as_an_empty_set() -> None:
    window = TimeWindow(10.0, "binary", buckets=10)
    hit = outcome_of("binary", True, {"prediction": True, "scores": {}})
    assert hit is not None
    window.update(100.0, hit)
    window.update(90.0, hit)  # bucket 90 covers (89, 90]: behind (90, 100]
    window.update(90.5, hit)  # bucket 91: inside
    assert window.n == 2 and window.values() == {"window_samples": 2.0, "accuracy": 1.0, "precision": 1.0,
                                                  "recall": 1.0, "f1": 1.0, "roc_auc": 0.0, "log_loss": 0.0}
    window.expire(100.6)  # floor(90.6) = 90: bucket 91 still reaches past 90.6
    assert window.n == 2
    window.expire(101.0)
    assert window.n == 1 and window.obj is window
    window.expire(1000.0)
    assert window.n == 0 and window.values() == MetricSet("binary").values()  # River's zeros
    with pytest.raises(ConfigError):
        TimeWindow(0.0, "binary")


def test_a_busy_bucket_is_binned_and_its_auc_stays_within_the_tie_bound() -> None:
    """10,000 scored outcomes a second: each bucket passes EXACT_SCORES and is binned;
    the AUC is then off by at most half the share of pairs sharing a bin, and the memory
    of the scores stops growing."""
    outcomes = list(binary_outcomes(20_000, seed=9))
    window = TimeWindow(2.0, "binary", buckets=2)
    exact = ExactROCAUC()
    for i, outcome in enumerate(outcomes, 1):
        window.update(T0 + i / 10_000, outcome)
        exact.update(outcome.y_true, outcome.proba)
    buckets = [window._buckets[i].scores for i in window._order]
    scores = [s for s in buckets if s is not None]
    assert window.n == 20_000 and len(scores) == 2 and all(s.counts is not None for s in scores)
    assert all(len(s.positives) + len(s.negatives) <= 256 for s in scores)
    got, bound = window.values()["roc_auc"], tie_share(scores) / 2
    assert 0 < bound < 0.01
    assert abs(got - exact.get()) <= bound
    # the exact path over the same pairs, kept unbinned, is ExactROCAUC to the last bit
    kept = Scores()
    for outcome in outcomes[:EXACT_SCORES]:
        kept.add(outcome.y_true is True, float(outcome.proba))
    small = ExactROCAUC()
    for outcome in outcomes[:EXACT_SCORES]:
        small.update(outcome.y_true, outcome.proba)
    assert kept.counts is None and roc_auc([kept]) == small.get()


def test_the_window_pickles_and_goes_on_alike() -> None:
    import pickle

    stream = timed(binary_outcomes(2000, seed=4), rate=100.0, jitter=1.0, seed=3)
    window = TimeWindow(10.0, "binary", buckets=10)
    for t, outcome in stream[:1500]:
        window.update(t, outcome)
    thawed: Any = pickle.loads(pickle.dumps(window))
    for t, outcome in stream[1500:]:
        window.update(t, outcome)
        thawed.update(t, outcome)
    assert thawed.values() == window.values() and thawed.n == window.n
