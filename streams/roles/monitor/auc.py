"""ROC AUC over buckets of (label, score) pairs: exact while they are small, binned when busy.

The Mann-Whitney AUC ranks every positive against every negative, so no summary of fixed
size gives it exactly. A :class:`Scores` keeps one bucket's scores as they are, 8 bytes
each, up to ``EXACT_SCORES``; past that it counts them in ``BINS`` bins evenly spaced over
the score's logit in [-20, 20] (0.01 apart: about 1% apart in p near 0 and near 1; scores
beyond the range share the end bins), 32 KB however many there are. :func:`roc_auc` of
buckets that all keep their scores is exactly :class:`~riverops.models.metrics.ExactROCAUC`
over the same pairs; once one bucket is binned, every score is, and a positive and a
negative in the same bin count half a win: the error is at most half :func:`tie_share`,
the share of (positive, negative) pairs that share a bin.

Examples
--------
>>> a, b = Scores(), Scores()
>>> for y, p in [(True, 0.03), (False, 0.01)]:
...     a.add(y, p)
>>> for y, p in [(False, 0.02), (True, 0.02)]:
...     b.add(y, p)
>>> roc_auc([a, b]), roc_auc([]), roc_auc([a, b], binned=True)
(0.875, 0.0, 0.875)
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Scores", "roc_auc", "tie_share", "BINS", "LOGIT_RANGE", "EXACT_SCORES"]

BINS = 4096
LOGIT_RANGE = 20.0
EXACT_SCORES = BINS  # a bucket keeps its scores while they take no more room than its bins
_FLUSH = 256  # once binned, scores wait in a small buffer and are binned in batches
_SCALE = BINS / (2 * LOGIT_RANGE)

_Counts = npt.NDArray[np.int64]
_EMPTY = np.empty(0, dtype=np.float64)


def bins(scores: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The bin of each score: monotone in the score (the logit of p clipped to [0, 1])."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    return np.clip(np.floor((logit + LOGIT_RANGE) * _SCALE), 0, BINS - 1).astype(np.intp)


class Scores:
    """One bucket's scores by label: kept as they are, or counted per bin when many."""

    __slots__ = ("positives", "negatives", "counts")

    def __init__(self) -> None:
        self.positives = array("d")
        self.negatives = array("d")
        self.counts: npt.NDArray[np.uint32] | None = None  # [negatives, positives] per bin

    @property
    def n(self) -> int:
        binned = 0 if self.counts is None else int(self.counts.sum())
        return len(self.positives) + len(self.negatives) + binned

    def add(self, positive: bool, score: float) -> None:
        (self.positives if positive else self.negatives).append(score)
        if len(self.positives) + len(self.negatives) > (
            EXACT_SCORES if self.counts is None else _FLUSH
        ):
            self._bin()

    def _bin(self) -> None:
        self.counts = _binned(self).astype(np.uint32)  # what was binned, plus the buffer
        self.positives, self.negatives = array("d"), array("d")


def _binned(scores: Scores) -> _Counts:
    """All of a bucket's scores as counts per bin, [negatives, positives]."""
    counts = np.zeros((2, BINS), dtype=np.int64)
    for row, kept in ((0, scores.negatives), (1, scores.positives)):
        if kept:
            counts[row] += np.bincount(bins(np.frombuffer(kept, dtype=np.float64)), minlength=BINS)
    if scores.counts is not None:
        counts += scores.counts
    return counts


def _merged_bins(buckets: Sequence[Scores]) -> _Counts:
    total = np.zeros((2, BINS), dtype=np.int64)
    for bucket in buckets:
        total += _binned(bucket)
    return total


def roc_auc(buckets: Sequence[Scores], *, binned: bool = False) -> float:
    """The AUC of every pair in ``buckets``: exact unless one of them is binned (or
    ``binned``); 0.0 with no pair at all and NaN with one class only, as ExactROCAUC."""
    if binned or any(b.counts is not None for b in buckets):
        negatives, positives = _merged_bins(buckets)
        n_pos, n_neg = int(positives.sum()), int(negatives.sum())
        if not n_pos or not n_neg:
            return 0.0 if not n_pos and not n_neg else float("nan")
        below = np.cumsum(negatives) - negatives
        twice_wins = int((positives * (2 * below + negatives)).sum())
        return twice_wins / (2 * n_pos * n_neg)
    pos = np.concatenate([_EMPTY, *(np.frombuffer(b.positives, dtype=np.float64) for b in buckets)])
    neg = np.concatenate([_EMPTY, *(np.frombuffer(b.negatives, dtype=np.float64) for b in buckets)])
    if not len(pos) or not len(neg):
        return 0.0 if not len(pos) and not len(neg) else float("nan")
    neg.sort()
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    wins = int(below.sum()) + 0.5 * int(ties.sum())
    return wins / (len(pos) * len(neg))


def tie_share(buckets: Sequence[Scores]) -> float:
    """The share of (positive, negative) pairs in the same bin: twice the most the binned
    AUC can be off by (0.0 when there is no such pair)."""
    negatives, positives = _merged_bins(buckets)
    pairs = int(positives.sum()) * int(negatives.sum())
    return int((positives * negatives).sum()) / pairs if pairs else 0.0
