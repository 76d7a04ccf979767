"""The monitor's windows: River metric sets over outcomes, by count and by label time.

An *outcome* is one made prediction scored against its label (:func:`outcome_of`); a
:class:`MetricSet` holds the task's River metrics over outcomes and can revert one, so
``river.utils.Rolling`` keeps it over the last N outcomes and :class:`TimeWindow` over the
last seconds of label time. :class:`~riverops.roles.monitor.core.MonitorCore` keeps one of
each per (model, version, variant).

Examples
--------
>>> window = TimeWindow(60.0, "binary")
>>> window.update(0.0, outcome_of("binary", True, {"prediction": True, "scores": {}}))
>>> window.update(30.0, outcome_of("binary", True, {"prediction": False, "scores": {}}))
>>> window.obj.values()["accuracy"], window.obj.n
(0.5, 2)
>>> window.expire(75.0)  # the first outcome falls out of (15, 75]
>>> window.obj.values()["accuracy"], window.obj.n
(0.0, 1)
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from river import metrics

from riverops.models.labels import coerce_label, positive_score
from riverops.models.metrics import ExactROCAUC
from riverops.schemas.errors import InvalidEventError
from riverops.schemas.events import Task

__all__ = ["Outcome", "outcome_of", "MetricSet", "TimeWindow", "METRIC_NAMES"]

# River metric classes per task: fed the predicted class, or the scores (when present)
_LABEL_METRICS: dict[Task, dict[str, Any]] = {
    "binary": {
        "accuracy": metrics.Accuracy, "precision": metrics.Precision,
        "recall": metrics.Recall, "f1": metrics.F1,
    },
    "multiclass": {"accuracy": metrics.Accuracy, "macro_f1": metrics.MacroF1},
    "regression": {"mae": metrics.MAE, "rmse": metrics.RMSE, "r2": metrics.R2},
}
_SCORE_METRICS: dict[Task, dict[str, Any]] = {
    "binary": {"roc_auc": ExactROCAUC, "log_loss": metrics.LogLoss},
    "multiclass": {"log_loss": metrics.CrossEntropy},
    "regression": {},
}
METRIC_NAMES: dict[Task, tuple[str, ...]] = {
    task: (*_LABEL_METRICS[task], *_SCORE_METRICS[task]) for task in _LABEL_METRICS
}


class Outcome(NamedTuple):
    """One made prediction against its label: what the metrics and the detector are fed."""

    y_true: Any
    y_pred: Any
    proba: Any  # P(True) for binary, a class -> probability dict for multiclass, or None
    error: float


def outcome_of(task: Task, label: Any, made: Mapping[str, Any]) -> Outcome | None:
    """The outcome of one made prediction, or None when it carries nothing to score."""
    prediction, scores = made.get("prediction"), made.get("scores") or {}
    if task == "binary":
        y_true = coerce_label("binary", label)
        p = positive_score(scores)
        if prediction is not None:
            y_pred = coerce_label("binary", prediction)
        elif p is not None:
            y_pred = p >= 0.5
        else:
            return None
        return Outcome(y_true, y_pred, p, float(y_pred != y_true))
    if task == "multiclass":
        finite = {str(k): v for k, v in scores.items() if math.isfinite(v)}
        if prediction is not None:
            predicted = str(prediction)
        elif finite:
            predicted = max(finite, key=lambda k: finite[k])
        else:
            return None
        return Outcome(str(label), predicted, finite or None, float(predicted != str(label)))
    if prediction is None:
        return None
    if isinstance(prediction, str) or isinstance(label, str):
        raise InvalidEventError(f"regression needs numbers, got {label!r} and {prediction!r}")
    y, yhat = float(label), float(prediction)
    if not (math.isfinite(y) and math.isfinite(yhat)):
        return None
    return Outcome(y, yhat, None, abs(y - yhat))


class MetricSet:
    """The task's River metrics, updated and reverted together (a River Rollable)."""

    def __init__(self, task: Task) -> None:
        self.n = 0
        self._labels = {name: cls() for name, cls in _LABEL_METRICS[task].items()}
        self._probas = {name: cls() for name, cls in _SCORE_METRICS[task].items()}

    def update(self, outcome: Outcome) -> None:
        self._apply("update", outcome)
        self.n += 1

    def revert(self, outcome: Outcome) -> None:
        self._apply("revert", outcome)
        self.n -= 1

    def _apply(self, method: str, o: Outcome) -> None:
        for metric in self._labels.values():
            getattr(metric, method)(o.y_true, o.y_pred)
        for metric in self._probas.values() if o.proba is not None else ():
            getattr(metric, method)(o.y_true, o.proba)

    def values(self) -> dict[str, float]:
        """Finite metric values (a NaN or inf is left out) plus ``window_samples``."""
        out = {"window_samples": float(self.n)}
        for name, metric in (*self._labels.items(), *self._probas.items()):
            value = float(metric.get())
            if math.isfinite(value):
                out[name] = value
        return out


class TimeWindow:
    """A metric set over the outcomes whose label time is in (end - period, end].

    Like ``river.utils.TimeRolling`` but with tz-free epoch seconds (TimeRolling compares
    to a naive datetime and so refuses tz-aware label times), expiry on demand (a key whose
    labels stop must not report stale values) and late outcomes outside the window dropped.
    """

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

