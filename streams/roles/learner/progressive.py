"""Progressive metrics: how well a model predicted each label before it learned it.

River's progressive validation (``river.evaluate.progressive_val_score``) scores every
prediction made before the model saw the label, so a stream is both the training and the
test set. The learner folds one period of such predictions into the metrics a snapshot
carries; the online role folds all of its predictions.

Examples
--------
>>> m = ProgressiveMetrics("binary")
>>> m.values()
{}
>>> m.update(True, {True: 0.8, False: 0.2})
>>> m.update(False, {True: 0.6, False: 0.4})
>>> m.values()  # one of two classes right; the positive ranked above the negative
{'accuracy': 0.5, 'roc_auc': 1.0}
"""

from __future__ import annotations

import math
from typing import Any

from river import metrics

from riverops.schemas.events import Task

__all__ = ["ProgressiveMetrics"]


class ProgressiveMetrics:
    """River metrics of a model's predictions made before it learned the label:
    accuracy and ROC AUC (binary), accuracy (multiclass), MAE (regression)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.n = 0
        self._metrics: dict[str, Any] = (
            {"accuracy": metrics.Accuracy(), "roc_auc": metrics.ROCAUC()} if task == "binary"
            else {"accuracy": metrics.Accuracy()} if task == "multiclass"
            else {"mae": metrics.MAE()}
        )

    def update(self, y: Any, predicted: Any) -> None:
        """Fold one (label, prediction) in: class probabilities for a classifier (River's
        argmax is the predicted class), a number for a regressor. Like River's progressive
        validation, an empty answer (a model that saw no label yet) is not scored."""
        if predicted is None or predicted == {}:
            return
        self.n += 1
        if self.task == "regression":
            self._metrics["mae"].update(y, predicted)
            return
        self._metrics["accuracy"].update(y, max(predicted, key=predicted.get))
        if "roc_auc" in self._metrics:
            self._metrics["roc_auc"].update(y, predicted)

    def values(self) -> dict[str, float]:
        """Finite metric values (NaN and inf are left out); none before the first answer."""
        out: dict[str, float] = {}
        for name, metric in self._metrics.items() if self.n else ():
            value = float(metric.get())
            if math.isfinite(value):
                out[name] = value + 0.0  # no -0.0
        return out
