"""How good a model is on a holdout: exact binary and regression metrics, and the scoring
of a River model or of the champion's recorded predictions on the same rows.

ROC AUC here is exact (the Mann-Whitney statistic, ties counted half), not River's
10-threshold approximation, which reads 0.5 for any scores that sit in one tenth of [0, 1].
Every function returns finite values only: a metric that cannot be computed (ROC AUC on
one class) is absent, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from riverops.models.batch import predict_batch, predict_proba_batch
from riverops.models.labels import coerce_label
from riverops.schemas.errors import InvalidEventError
from riverops.schemas.events import Task

__all__ = ["binary_metrics", "regression_metrics", "evaluate_model", "evaluate_recorded"]

_EPS = 1e-15  # log loss clips probabilities to [eps, 1 - eps], as River and sklearn do


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def binary_metrics(y: Sequence[bool], p_true: Sequence[float],
                   predicted: Sequence[bool | None] | None = None) -> dict[str, float]:
    """Accuracy, exact ROC AUC and log loss; finite values only.

    ``p_true`` holds P(True) (NaN where unknown: such rows count for accuracy only, if
    ``predicted`` names their class); the predicted class is ``predicted`` where given,
    else ``p >= 0.5``. ROC AUC needs both classes.

    >>> m = binary_metrics([True, False, True, False], [0.9, 0.2, 0.4, 0.4])
    >>> m["accuracy"], m["roc_auc"], round(m["log_loss"], 4)
    (0.75, 0.875, 0.4389)
    """
    ys = np.asarray(y, dtype=bool)
    ps = np.asarray(p_true, dtype=np.float64)
    given = [None] * len(ys) if predicted is None else list(predicted)
    has_p = np.isfinite(ps)
    pred = np.array([g if g is not None else bool(p >= 0.5) for g, p in zip(given, ps,
                                                                           strict=True)])
    answered = np.array([g is not None for g in given]) | has_p
    out: dict[str, float] = {}
    if answered.any():
        out["accuracy"] = float((pred[answered] == ys[answered]).mean())
    yp, pp = ys[has_p], ps[has_p]
    positives = int(yp.sum())
    negatives = len(yp) - positives
    if positives and negatives:
        ranks = pd.Series(pp).rank(method="average").to_numpy()
        u = ranks[yp].sum() - positives * (positives + 1) / 2
        out["roc_auc"] = float(u / (positives * negatives))
    if len(yp):
        clipped = np.clip(pp, _EPS, 1 - _EPS)
        out["log_loss"] = float(-np.mean(np.where(yp, np.log(clipped), np.log1p(-clipped))))
    return _finite(out)


def regression_metrics(y: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MAE, RMSE and R² over the rows with a finite prediction; finite values only.

    >>> {k: round(v, 4) for k, v in regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]).items()}
    {'mae': 0.6667, 'rmse': 1.1547, 'r2': -1.0}
    """
    ys = np.asarray(y, dtype=np.float64)
    ps = np.asarray(y_pred, dtype=np.float64)
    ok = np.isfinite(ps)
    ys, ps = ys[ok], ps[ok]
    if not len(ys):
        return {}
    err = ys - ps
    out = {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err * err).mean()))}
    total = float(((ys - ys.mean()) ** 2).sum())
    if total > 0:
        out["r2"] = 1.0 - float((err * err).sum()) / total
    return _finite(out)


def _p_true(proba: Mapping[Any, float]) -> float:
    if True in proba:
        return float(proba[True])
    if False in proba:
        return 1.0 - float(proba[False])
    return math.nan  # a model that saw no label answers {}


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool | str):
        return math.nan
    return float(value)


def evaluate_model(task: Task, model: Any, rows: list[dict[str, Any]],
                    y: list[Any]) -> tuple[dict[str, float], int]:
    """A model's metrics on the rows, and how many rows it answered."""
    if task == "binary":
        p = [_p_true(proba) for proba in predict_proba_batch(model, rows)]
        return binary_metrics(y, p), sum(math.isfinite(v) for v in p)
    pred = [_number(v) for v in predict_batch(model, rows)]
    return regression_metrics(y, pred), sum(math.isfinite(v) for v in pred)


def _class(value: Any) -> bool | None:
    """A recorded binary prediction as a class; None when absent or unreadable."""
    try:
        return None if value is None else bool(coerce_label("binary", value))
    except InvalidEventError:
        return None


def evaluate_recorded(task: Task, tail: pd.DataFrame, y: list[Any]) -> tuple[dict[str, float], int]:
    """The recorded champion predictions' metrics on the tail, and how many rows they cover."""
    keep = np.flatnonzero(tail["champion_version"].notna().to_numpy())
    recorded = tail["champion_prediction"].tolist()
    ys = [y[i] for i in keep]
    if task == "binary":
        scores = tail["champion_score"].to_numpy(dtype=np.float64)[keep]
        given = [_class(recorded[i]) for i in keep]
        answered = sum(g is not None or math.isfinite(p) for g, p in zip(given, scores,
                                                                        strict=True))
        return (binary_metrics(ys, scores, given) if answered else {}), answered
    pred = [_number(recorded[i]) for i in keep]
    return regression_metrics(ys, pred), sum(math.isfinite(v) for v in pred)

