"""Performance before labels: accuracy and ROC AUC a binary model should have, from its scores.

The idea of NannyML's CBPE: if a model is calibrated (of the events it scores p, a share p
is positive), each event is positive with probability p, so the expected confusion matrix
of a window follows from its scores alone. At the 0.5 threshold the expected accuracy is
``mean(max(p, 1 - p))``; the expected ROC AUC is the ratio of the expected concordant
pairs to the expected positive-negative pairs, ``sum_{i != j} p_i (1 - p_j) [p_i > p_j]``
(ties half) over ``sum_{i != j} p_i (1 - p_j)``: one sort, O(n log n).

The estimate moves as soon as the scores do (covariate shift: P(x) changes, P(y|x) does
not), long before the labels of the new regime arrive. It cannot see concept drift: when
P(y|x) changes the scores stay the same, so the estimate stays where it was while the
realised figures fall. And it is only as good as the calibration, which only labels can
check: :func:`backtest` makes the estimate from labelled outcomes' own scores and compares
it with what their labels give, with the ECE (:func:`calibration_error`); :func:`judge`
turns that into a trust flag. The ECE alone is not enough on imbalanced data: a model
whose low scores are a few points too high is calibrated within 0.01 over ten bins, yet
its expected ROC AUC is far too low (it counts the many near-zero negatives as a few
percent positive): the backtest's miss catches that.

:class:`ScoreWindow` keeps the last N positive-class scores per (model, version, variant)
in a ring allocated once: a batch is one slice assignment, the estimate one sort when asked.

Examples
--------
>>> import numpy as np
>>> p = np.array([0.9, 0.8, 0.3, 0.1])
>>> round(expected_accuracy(p), 4)
0.825
>>> round(expected_roc_auc(p), 4)
0.9215
>>> window: ScoreWindow[tuple[str, int, str]] = ScoreWindow(size=3, min_samples=2)
>>> window.update(("fraud", 1, "champion"), p)
>>> estimate = window.estimate(("fraud", 1, "champion"))
>>> estimate.samples, round(estimate.accuracy, 4), estimate.trust
(3, 0.8, 'unchecked')
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from riverops.models.labels import positive_score

__all__ = [
    "expected_accuracy", "expected_roc_auc", "calibration_error", "Estimate", "Trust",
    "ScoreWindow", "judge", "positive_scores", "Backtest", "backtest", "MAX_ECE", "MAX_MISS",
    "MIN_LABELLED", "MIN_CLASS",
]

Floats = npt.NDArray[np.float64]
K = TypeVar("K", bound=Hashable)

Trust = Literal["calibrated", "uncalibrated", "unchecked", "too_few"]
"""calibrated: the labelled outcomes checked say the scores are calibrated (ECE within the
bound, and the estimate made from their scores met their labels); uncalibrated: they say
not (the estimate is not to be believed); unchecked: too few labelled outcomes to check
against (or none: where the scores alone are known, the scorer); too_few: too few scores
in the window for an estimate worth showing."""

MAX_ECE = 0.05
"""Default bound on the expected calibration error above which an estimate is not trusted."""
MAX_MISS = 0.03
"""Default bound on the backtest's miss (beyond two standard errors) above which it is not."""
MIN_LABELLED = 200
"""Labelled outcomes below which the calibration is not judged (the ECE is mostly noise)."""
MIN_CLASS = 30
"""Labelled outcomes of each class below which a backtest that found nothing wrong says
``unchecked``, not ``calibrated`` (five positives cannot vouch for a ROC AUC)."""


def expected_accuracy(p: npt.ArrayLike) -> float:
    """Expected accuracy at the 0.5 threshold of positive-class scores ``p`` (NaN if none)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return math.nan
    return float(np.maximum(p, 1.0 - p).mean())


def expected_roc_auc(p: npt.ArrayLike) -> float:
    """Expected ROC AUC of positive-class scores ``p`` when each event is positive with
    probability p: expected concordant pairs (ties half) over expected pairs, i != j.
    NaN with fewer than two scores or no expected pair (every p is 0, or every p is 1)."""
    p = np.sort(np.asarray(p, dtype=np.float64))
    if p.size < 2:
        return math.nan
    q = 1.0 - p
    below = np.concatenate(([0.0], np.cumsum(q)))  # below[k]: sum of q over p[:k]
    lo = np.searchsorted(p, p, side="left")
    hi = np.searchsorted(p, p, side="right")
    # each i against the j scored lower, and half of the other j scored the same
    concordant = float(np.dot(p, below[lo] + 0.5 * (below[hi] - below[lo] - q)))
    pairs = float(p.sum() * q.sum() - np.dot(p, q))
    if pairs <= 0.0:
        return math.nan
    return concordant / pairs


def positive_scores(scores: Sequence[Mapping[str, float]]) -> Floats:
    """P(True) of each scores map of a binary model (as the scorer makes them: keys
    ``str(class)``) as one array, NaN where unknown: the key is found once, then read by
    C-level ``map`` (a batch with a map lacking it: row by row).

    >>> positive_scores([{"False": 0.25, "True": 0.75}, {"0": 0.5}]).tolist()
    [0.75, 0.5]
    """
    if not scores:
        return np.empty(0)
    first = scores[0]
    try:
        for name in ("True", "1", "1.0"):
            if name in first:
                return np.fromiter(map(itemgetter(name), scores), np.float64, len(scores))
        for name in ("False", "0", "0.0"):
            if name in first:
                return 1.0 - np.fromiter(map(itemgetter(name), scores), np.float64, len(scores))
    except KeyError:  # a map without the key (a model that has seen one class so far)
        pass
    return np.array([math.nan if (p := positive_score(s)) is None else p for s in scores])


def calibration_error(p: npt.ArrayLike, y: npt.ArrayLike, *, bins: int = 10) -> float:
    """Expected calibration error of scores ``p`` against 0/1 labels ``y``: the
    count-weighted mean gap between the mean score and the positive rate over ``bins``
    equal-width bins of [0, 1] (NaN if no outcome).

    >>> round(calibration_error([0.2, 0.2, 0.8, 0.8], [0, 1, 1, 1]), 4)
    0.25
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} scores but {y.size} labels")
    if p.size == 0:
        return math.nan
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gaps = np.abs(np.bincount(which, weights=p, minlength=bins)
                  - np.bincount(which, weights=y, minlength=bins))
    return float(gaps.sum() / counts.sum())


def _auc_stderr(auc: float, positives: float, negatives: float) -> float:
    """Hanley and McNeil's (1982) standard error of a ROC AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc)
           + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    return math.sqrt(max(var, 0.0))


def _realised_auc(p: Floats, y: Floats) -> float:
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    lo, hi = np.searchsorted(ps, ps, side="left"), np.searchsorted(ps, ps, side="right")
    ranks = (lo + hi + 1) / 2.0  # 1-based mid-ranks: ties half
    positives = ys.sum()
    negatives = ys.size - positives
    return float((ranks[ys == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@dataclass(frozen=True, slots=True)
class Backtest:
    """The estimate made from labelled outcomes' scores against what their labels give."""

    samples: int
    ece: float
    expected: dict[str, float]
    realised: dict[str, float]
    stderr: dict[str, float]
    """standard error of each realised figure (its noise as a sample)"""
    positives: int = 0

    def miss(self) -> float:
        """The largest gap between expected and realised beyond two standard errors (<= 0:
        within the noise; NaN when no metric could be compared)."""
        gaps = [abs(self.expected[k] - self.realised[k]) - 2 * self.stderr[k]
                for k in self.realised if k in self.expected]
        return max(gaps) if gaps else math.nan


def backtest(p: npt.ArrayLike, y: npt.ArrayLike) -> Backtest:
    """The estimate over labelled outcomes (scores ``p``, 0/1 labels ``y``) against them.

    >>> check = backtest([0.1, 0.2, 0.8, 0.9] * 50, [0, 0, 1, 1] * 50)
    >>> check.realised["accuracy"], round(check.expected["accuracy"], 2), check.miss() > MAX_MISS
    (1.0, 0.85, True)
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ece = calibration_error(p, y)
    if p.size == 0:
        return Backtest(0, ece, {}, {}, {})
    accuracy = float(((p >= 0.5) == (y == 1)).mean())
    expected = {"accuracy": expected_accuracy(p), "roc_auc": expected_roc_auc(p)}
    realised = {"accuracy": accuracy}
    stderr = {"accuracy": math.sqrt(accuracy * (1 - accuracy) / p.size)}
    positives = float(y.sum())
    if 0 < positives < p.size and math.isfinite(expected["roc_auc"]):
        realised["roc_auc"] = auc = _realised_auc(p, y)
        stderr["roc_auc"] = _auc_stderr(auc, positives, p.size - positives)
    return Backtest(int(p.size), ece, expected, realised, stderr, int(positives))


def judge(samples: int, check: Backtest | None = None, *, min_samples: int,
          max_ece: float = MAX_ECE, max_miss: float = MAX_MISS) -> Trust:
    """How far an estimate over ``samples`` scores can be trusted, given the backtest on
    labelled outcomes (None: there is none). ``calibrated`` needs :data:`MIN_CLASS`
    outcomes of each class; ``uncalibrated`` only the evidence.

    >>> judge(1000, None, min_samples=200), judge(10, None, min_samples=200)
    ('unchecked', 'too_few')
    """
    if samples < min_samples:
        return "too_few"
    if check is None or check.samples < MIN_LABELLED or math.isnan(check.ece):
        return "unchecked"
    if check.ece > max_ece or check.miss() > max_miss:
        return "uncalibrated"
    if min(check.positives, check.samples - check.positives) < MIN_CLASS:
        return "unchecked"  # nothing found, but too few of a class to vouch for it
    return "calibrated"


@dataclass(frozen=True, slots=True)
class Estimate:
    """The estimate over one window of scores, and how far to trust it."""

    samples: int
    accuracy: float
    roc_auc: float
    trust: Trust
    check: Backtest | None = None
    """the backtest it was judged with (None: not checked)"""

    def metrics(self) -> dict[str, float]:
        """The finite estimated metrics by name (accuracy, roc_auc)."""
        values = {"accuracy": self.accuracy, "roc_auc": self.roc_auc}
        return {name: value for name, value in values.items() if math.isfinite(value)}


class _Ring:
    __slots__ = ("values", "filled", "at")

    def __init__(self, size: int) -> None:
        self.values: Floats = np.empty(size, dtype=np.float64)
        self.filled = 0
        self.at = 0  # where the next score goes

    def add(self, p: Floats) -> None:
        size = self.values.size
        if p.size >= size:
            self.values[:] = p[-size:]
            self.at, self.filled = 0, size
            return
        end = self.at + p.size
        if end <= size:
            self.values[self.at:end] = p
        else:
            split = size - self.at
            self.values[self.at:] = p[:split]
            self.values[:end - size] = p[split:]
        self.at = end % size
        self.filled = min(size, self.filled + p.size)

    def current(self) -> Floats:
        return self.values[:self.filled] if self.filled < self.values.size else self.values


class ScoreWindow(Generic[K]):
    """The last ``size`` positive-class scores of each key, and their estimate.

    ``update`` takes a batch as one array (non-finite scores are left out); ``estimate``
    computes on demand. ``min_samples``: fewer scores give trust ``too_few``.
    """

    def __init__(self, *, size: int = 5000, min_samples: int = 200) -> None:
        if size < 1 or min_samples < 1:
            raise ValueError(f"size must be >= 1 and min_samples >= 1, got {size}, {min_samples}")
        self.size = size
        self.min_samples = min_samples
        self._rings: dict[K, _Ring] = {}

    def update(self, key: K, p: npt.ArrayLike) -> None:
        """Add a batch of scores of ``key``."""
        scores = np.asarray(p, dtype=np.float64)
        if not np.isfinite(scores).all():
            scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            return
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = _Ring(self.size)
        ring.add(np.clip(scores, 0.0, 1.0))

    def keys(self) -> list[K]:
        return list(self._rings)

    def retain(self, keys: Iterable[K]) -> None:
        """Forget every key not in ``keys`` (versions no longer served)."""
        kept = set(keys)
        self._rings = {k: ring for k, ring in self._rings.items() if k in kept}

    def scores(self, key: K) -> Floats:
        """A copy of the scores in the window of ``key`` (oldest first not guaranteed)."""
        ring = self._rings.get(key)
        return np.empty(0) if ring is None else ring.current().copy()

    def estimate(self, key: K, *, check: Backtest | None = None) -> Estimate:
        """The estimate of ``key``'s window, judged by ``check`` if the caller made one."""
        ring = self._rings.get(key)
        p = np.empty(0) if ring is None else ring.current()
        trust = judge(int(p.size), check, min_samples=self.min_samples)
        return Estimate(int(p.size), expected_accuracy(p), expected_roc_auc(p), trust, check)
