"""The estimate before labels, recalibrated on labelled outcomes: NannyML's CBPE step that
riverops' raw estimate skips.

:mod:`riverops.models.estimate` takes each score for the probability of the positive class.
When a model is not calibrated that is wrong, and the ROC AUC estimate most of all on
imbalanced data (the demo's logreg: 0.81 expected, 0.96 realised). NannyML first fits a
calibrator on a labelled reference set. Here the scorer, which has no labels, exports the
histogram of its window's scores over :data:`EDGES` (64 bins of a quarter logit from -8
to 8, so the low scores of a rare class are told apart); whoever has labelled outcomes
(``riverops status``, on the feedback) fits the positive rate of each bin
(:func:`bin_rates`) and :func:`expected_from_bins` gives the accuracy and ROC AUC the
window should have if P(y | score) is what it was over those outcomes. That holds under
covariate shift, not under concept drift. Within a bin the scores count as tied, which
costs a little discrimination: with a model's own scores as the rates, the binned ROC AUC
is 0.0004-0.002 under the raw one on Beta-distributed scores.

Examples
--------
>>> import numpy as np
>>> p = np.array([0.02, 0.03, 0.9, 0.95])
>>> counts = score_bins(p)
>>> int(counts.sum()), int(counts[32:].sum())  # the upper half of the bins: scores >= 0.5
(4, 2)
>>> rates = bin_rates(p, np.array([0.0, 0.0, 1.0, 1.0]))
>>> accuracy, auc = expected_from_bins(counts, rates)
>>> accuracy > 0.8, auc > 0.9
(True, True)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["EDGES", "BINS", "score_bins", "bin_rates", "expected_from_bins", "PRIOR_WEIGHT"]

Floats = npt.NDArray[np.float64]

EDGES: Floats = np.linspace(-8.0, 8.0, 65)[1:-1]
"""Inner bin edges, in logits (0 is one of them: bins 32 and up hold the scores >= 0.5)."""
BINS = EDGES.size + 1
PRIOR_WEIGHT = 2.0
"""Pseudo-outcomes pulling a bin's fitted rate toward its own mean score (a bin with few
labelled outcomes keeps about what the model said)."""

_CENTRES = 1.0 / (1.0 + np.exp(-np.concatenate(([-8.125], (EDGES[:-1] + EDGES[1:]) / 2,
                                                 [8.125]))))


def _bin_of(p: Floats) -> npt.NDArray[np.intp]:
    clipped = np.clip(p, 1e-12, 1.0 - 1e-12)
    return np.searchsorted(EDGES, np.log(clipped / (1.0 - clipped)), side="right")


def score_bins(p: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """How many of the scores ``p`` fall in each of the :data:`BINS` bins."""
    return np.bincount(_bin_of(np.asarray(p, dtype=np.float64)), minlength=BINS).astype(np.int64)


def bin_rates(p: npt.ArrayLike, y: npt.ArrayLike) -> Floats:
    """The positive rate of each bin over labelled outcomes (scores ``p``, 0/1 labels
    ``y``), each pulled toward the bin's mean score by :data:`PRIOR_WEIGHT` outcomes (an
    empty bin: the score of its centre)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    which = _bin_of(p)
    n = np.bincount(which, minlength=BINS)
    positives = np.bincount(which, weights=y, minlength=BINS)
    mean_score = np.where(n > 0, np.bincount(which, weights=p, minlength=BINS) / np.maximum(n, 1),
                          _CENTRES)
    return np.asarray((positives + PRIOR_WEIGHT * mean_score) / (n + PRIOR_WEIGHT), dtype=np.float64)


def expected_from_bins(counts: npt.ArrayLike, rates: npt.ArrayLike) -> tuple[float, float]:
    """(accuracy, ROC AUC) expected of scores binned as ``counts`` when a bin's events are
    positive at its ``rates``: predicted positive from bin ``BINS // 2`` on (score >= 0.5),
    tied within a bin (half a pair). NaN where undefined (no score; no expected pair)."""
    n = np.asarray(counts, dtype=np.float64)
    c = np.asarray(rates, dtype=np.float64)
    total = n.sum()
    if total == 0:
        return math.nan, math.nan
    upper = np.arange(BINS) >= BINS // 2
    accuracy = float((n * np.where(upper, c, 1.0 - c)).sum() / total)
    negatives = n * (1.0 - c)
    below = np.concatenate(([0.0], np.cumsum(negatives)[:-1]))  # expected negatives in lower bins
    concordant = float((n * c * (below + 0.5 * (n - 1) * (1.0 - c))).sum())
    pairs = float((n * c).sum() * negatives.sum() - (n * c * (1.0 - c)).sum())
    return accuracy, (concordant / pairs if pairs > 0 else math.nan)
