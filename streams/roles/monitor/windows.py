"""The monitor's windows: the task's metrics over outcomes, by count and by label time.

An *outcome* is one made prediction scored against its label (:func:`outcome_of`); a
:class:`MetricSet` holds the task's River metrics over outcomes and can revert one, so
:class:`CountWindow` keeps it over the last N outcomes (as ``river.utils.Rolling`` does,
folding the outcomes in when the window is read). :class:`TimeWindow` covers the
last seconds of label time with per-bucket sums instead of every outcome (its memory does
not grow with the rate): merged, they give the values a MetricSet over the same outcomes
gives. :class:`~riverops.roles.monitor.core.MonitorCore` keeps one of each per (model,
version, variant).

Examples
--------
>>> window = TimeWindow(60.0, "binary")
>>> window.update(0.0, outcome_of("binary", True, {"prediction": True, "scores": {}}))
>>> window.update(30.0, outcome_of("binary", True, {"prediction": False, "scores": {}}))
>>> window.values()["accuracy"], window.n
(0.5, 2)
>>> window.expire(75.0)  # the first outcome falls out of (15, 75]
>>> window.values()["accuracy"], window.n
(0.0, 1)
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from river import metrics, stats

from riverops.models.labels import coerce_label, positive_score
from riverops.models.metrics import ExactROCAUC
from riverops.roles.monitor.auc import Scores, roc_auc
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import Task

__all__ = ["Outcome", "outcome_of", "MetricSet", "CountWindow", "TimeWindow", "METRIC_NAMES", "BUCKETS"]

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
    """The task's River metrics, updated and reverted together (a River Rollable). The
    classification metrics share one River ``ConfusionMatrix`` (their ``cm``), updated
    once per outcome: each metric's own update would update it again."""

    def __init__(self, task: Task) -> None:
        self.n = 0
        self._cm = metrics.ConfusionMatrix() if task != "regression" else None
        shared = {} if self._cm is None else {"cm": self._cm}
        self._labels = {name: cls(**shared) for name, cls in _LABEL_METRICS[task].items()}
        self._counted = () if self._cm is not None else tuple(self._labels.values())
        self._probas = tuple(cls() for cls in _SCORE_METRICS[task].values())
        self._names = (*self._labels, *_SCORE_METRICS[task])

    def update(self, o: Outcome) -> None:
        if self._cm is not None:
            self._cm.update(o.y_true, o.y_pred)
        for metric in self._counted:
            metric.update(o.y_true, o.y_pred)
        if o.proba is not None:
            for metric in self._probas:
                metric.update(o.y_true, o.proba)
        self.n += 1

    def revert(self, o: Outcome) -> None:
        if self._cm is not None:
            self._cm.revert(o.y_true, o.y_pred)
        for metric in self._counted:
            metric.revert(o.y_true, o.y_pred)
        if o.proba is not None:
            for metric in self._probas:
                metric.revert(o.y_true, o.proba)
        self.n -= 1

    def values(self) -> dict[str, float]:
        """Finite metric values (a NaN or inf is left out) plus ``window_samples``."""
        out = {"window_samples": float(self.n)}
        for name, metric in zip(self._names, (*self._labels.values(), *self._probas), strict=True):
            value = float(metric.get())
            if math.isfinite(value):
                out[name] = value
        return out


class CountWindow:
    """A :class:`MetricSet` over the last ``size`` outcomes, brought up to date when read.

    :meth:`update` only keeps the outcome; :meth:`metrics` folds the outcomes that came
    since the last read in as ``river.utils.Rolling`` would have, one at a time (revert the
    oldest, update with the new: the same values, bit for bit), or, when ``size`` or more
    came, builds the set afresh from the last ``size`` (the whole window was replaced; its
    means are then the window's own, without the rounding of reverts). A read costs at
    most ``size`` updates whatever the rate, and an outcome costs an append: at thousands
    of outcomes per second and a read every few seconds, the monitor no longer updates
    and reverts seven metrics per outcome.

    >>> window = CountWindow("binary", 2)
    >>> for right in (True, False, False):
    ...     window.update(outcome_of("binary", True, {"prediction": right, "scores": {}}))
    >>> window.metrics().values()["accuracy"], window.metrics().n
    (0.0, 2)
    """

    __slots__ = ("task", "size", "_set", "_window", "_pending", "_arrived")

    def __init__(self, task: Task, size: int) -> None:
        self.task, self.size = task, size
        self._set = MetricSet(task)
        self._window: deque[Outcome] = deque()  # the outcomes ``_set`` holds, oldest first
        self._pending: deque[Outcome] = deque(maxlen=size)  # since the last read (its newest)
        self._arrived = 0  # outcomes since the last read, those past ``size`` included

    def update(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._arrived += 1

    def metrics(self) -> MetricSet:
        """The set over the last ``size`` outcomes."""
        if self._arrived:
            if self._arrived >= self.size:
                self._set, self._window = MetricSet(self.task), deque()
            held, window = self._set, self._window
            for outcome in self._pending:
                if len(window) == self.size:
                    held.revert(window.popleft())
                held.update(outcome)
                window.append(outcome)
            self._pending.clear()
            self._arrived = 0
        return self._set


BUCKETS = 300
"""Buckets per time window: 1-second buckets in the default 300-second window."""

_CLAMP = 1e-15  # River clamps probabilities to [1e-15, 1 - 1e-15] before the log


def _score_loss(task: Task, o: Outcome) -> float:
    """River's LogLoss (binary) or CrossEntropy (multiclass) term of one scored outcome."""
    if task == "binary":
        p = min(max(float(o.proba), _CLAMP), 1 - _CLAMP)
        return -math.log(p) if o.y_true else -math.log(1 - p)
    return -sum(math.log(min(max(p, _CLAMP), 1 - _CLAMP)) for c, p in o.proba.items() if c == o.y_true)


class _Bucket:
    """The outcomes of one slice of label time, as the sums their metrics need: label
    pair counts, means of the losses (River's ``stats.Mean``, merged by ``+=``), the
    scores for ROC AUC, a regression's label variance and residual sum of squares."""

    __slots__ = ("n", "pairs", "loss", "scores", "abs_error", "squared_error", "y", "rss")

    def __init__(self, task: Task) -> None:
        self.n = 0
        self.pairs: dict[tuple[Any, Any], int] = {}  # (y_true, y_pred) -> outcomes
        self.loss = stats.Mean()  # over the outcomes with a score
        self.scores = Scores() if task == "binary" else None
        self.abs_error = self.squared_error = self.y = None
        self.rss = 0.0
        if task == "regression":
            self.abs_error, self.squared_error, self.y = stats.Mean(), stats.Mean(), stats.Var()

    def add(self, task: Task, o: Outcome) -> None:
        self.n += 1
        if task == "regression":
            assert self.abs_error is not None and self.squared_error is not None and self.y is not None
            self.abs_error.update(abs(o.y_true - o.y_pred))
            self.squared_error.update((o.y_true - o.y_pred) ** 2)
            self.y.update(o.y_true)
            self.rss += (o.y_true - o.y_pred) * (o.y_true - o.y_pred)
            return
        key = (o.y_true, o.y_pred)
        self.pairs[key] = self.pairs.get(key, 0) + 1
        if o.proba is not None:
            self.loss.update(_score_loss(task, o))
            if self.scores is not None:
                self.scores.add(o.y_true is True, float(o.proba))


def _mean(parts: list[stats.Mean]) -> float:
    total = stats.Mean()
    for part in parts:
        if part.n:
            total += part
    return total.get()


def _values(task: Task, buckets: Sequence[_Bucket]) -> dict[str, float]:
    """What :meth:`MetricSet.values` gives over the outcomes of ``buckets``: River's own
    formulas over the merged sums (a confusion matrix weighted by the pair counts)."""
    raw: dict[str, float] = {}
    if task == "regression":
        var = stats.Var()
        for b in buckets:
            if b.y is not None and b.y.n:
                var += b.y
        raw["mae"] = _mean([b.abs_error for b in buckets if b.abs_error is not None])
        raw["rmse"] = _mean([b.squared_error for b in buckets if b.squared_error is not None]) ** 0.5
        raw["r2"] = 0.0  # River's R2: 0 under two samples or with a constant label
        if var.mean.n > 1 and var.get() != 0:
            raw["r2"] = 1 - sum(b.rss for b in buckets) / ((var.mean.n - 1) * var.get())
    else:
        cm = metrics.ConfusionMatrix()
        pairs: dict[tuple[Any, Any], int] = {}
        for b in buckets:
            for key, count in b.pairs.items():
                pairs[key] = pairs.get(key, 0) + count
        for (y_true, y_pred), count in pairs.items():
            cm.update(y_true, y_pred, w=float(count))
        for name, cls in _LABEL_METRICS[task].items():
            raw[name] = float(cls(cm=cm).get())
        if task == "binary":
            raw["roc_auc"] = roc_auc([b.scores for b in buckets if b.scores is not None])
        raw["log_loss"] = _mean([b.loss for b in buckets])
    out = {"window_samples": float(sum(b.n for b in buckets))}
    out.update((name, raw[name]) for name in METRIC_NAMES[task] if math.isfinite(raw[name]))
    return out


class TimeWindow:
    """The task's metrics over the outcomes whose label time is in the last ``period``
    seconds, kept as ``buckets`` buckets of ``period / buckets`` seconds each.

    Bucket ``k`` holds the label times in ((k - 1) w, k w]; a window ending at ``end``
    keeps the buckets that reach past ``end - period``, so it spans ``period`` to
    ``period + w`` seconds (exactly ``(end - period, end]`` when ``end`` is a multiple of
    ``w``). Like ``river.utils.TimeRolling`` but with tz-free epoch seconds (TimeRolling
    compares to a naive datetime and so refuses tz-aware label times), expiry on demand (a
    key whose labels stop must not report stale values) and late outcomes outside the
    window dropped. Memory: ``buckets`` small sums (~1 KB each), plus for binary tasks up
    to 32 KB of scores or bins per bucket (see :mod:`~riverops.roles.monitor.auc`).
    """

    def __init__(self, period: float, task: Task, *, buckets: int = BUCKETS) -> None:
        if not period > 0 or buckets < 1:
            raise ConfigError(f"a time window needs a positive period and buckets, got {period}, {buckets}")
        self.period = period
        self.task: Task = task
        self.buckets = buckets
        self.n = 0
        self._per_second = buckets / period
        self._buckets: dict[int, _Bucket] = {}
        self._order: list[int] = []  # the indexes of self._buckets, ascending
        self._end = -math.inf
        self._first = -math.inf  # the lowest bucket index inside the window

    @property
    def obj(self) -> TimeWindow:
        """The window itself: ``n`` and ``values()``, as ``river.utils.Rolling.obj`` has."""
        return self

    def update(self, t: float, outcome: Outcome) -> None:
        self.expire(t)
        index = math.ceil(t * self._per_second)
        if index < self._first:
            return
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket(self.task)
            bisect.insort(self._order, index)
        bucket.add(self.task, outcome)
        self.n += 1

    def expire(self, end: float) -> None:
        if end <= self._end:
            return
        self._end = end
        self._first = math.floor((end - self.period) * self._per_second) + 1
        while self._order and self._order[0] < self._first:
            self.n -= self._buckets.pop(self._order.pop(0)).n

    def values(self) -> dict[str, float]:
        """Finite metric values plus ``window_samples``, as :meth:`MetricSet.values`."""
        return _values(self.task, [self._buckets[i] for i in self._order])
