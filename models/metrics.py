"""An exact, revertible ROC AUC for rolling windows.

River's ``metrics.ROCAUC`` approximates with 10 thresholds spread over [0, 1]; with rare
positives (fraud at 1-4%) nearly every score falls under the first threshold and it
reads 0.5 whatever the ranking. This one keeps the scores of the window sorted and gives
the exact Mann-Whitney AUC (ties count half), with River's ``update``/``revert``/``get``
so it works inside ``utils.Rolling``.

Examples
--------
>>> auc = ExactROCAUC()
>>> for y, p in [(True, 0.03), (False, 0.01), (False, 0.02), (True, 0.02)]:
...     auc.update(y, p)
>>> auc.get()
0.875
"""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["ExactROCAUC"]


class ExactROCAUC:
    """Exact ROC AUC of the (label, score) pairs updated and not reverted."""

    def __init__(self, pos_val: Any = True) -> None:
        self.pos_val = pos_val
        self._positives: list[float] = []
        self._negatives: list[float] = []

    def update(self, y_true: Any, y_pred: Any) -> None:
        bisect.insort(self._positives if y_true == self.pos_val else self._negatives, _score(y_pred, self.pos_val))

    def revert(self, y_true: Any, y_pred: Any) -> None:
        scores = self._positives if y_true == self.pos_val else self._negatives
        index = bisect.bisect_left(scores, _score(y_pred, self.pos_val))
        if index < len(scores):
            del scores[index]

    def get(self) -> float:
        if not self._positives or not self._negatives:
            return 0.0 if not self._positives and not self._negatives else float("nan")
        wins = 0.0
        for score in self._positives:
            below = bisect.bisect_left(self._negatives, score)
            ties = bisect.bisect_right(self._negatives, score) - below
            wins += below + 0.5 * ties
        return wins / (len(self._positives) * len(self._negatives))

    def __repr__(self) -> str:
        return f"ExactROCAUC: {self.get():.4f}"


def _score(y_pred: Any, pos_val: Any) -> float:
    if isinstance(y_pred, dict):
        return float(y_pred.get(pos_val, 0.0))
    return float(y_pred)
