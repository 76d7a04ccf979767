"""Explanations of linear models' predictions: the largest contributions, weight times value.

For a pipeline that ends in River's ``LogisticRegression`` or ``LinearRegression`` (the
zoo's ``logreg`` and ``linreg``), the raw output of a row is ``intercept + sum(w[f] * x[f])``
over the features ``f`` the steps before the linear model produce: the scaled numbers and
the one-hot dummies of :class:`~riverops.models.specs.FeatureEncoder`, named as it names
them (``amount``, ``merchant_category_travel``). That raw output is the logit of the
``True`` probability for ``logreg`` and the prediction itself for ``linreg``.

An :data:`Explanation` lists the ``top_k`` contributions of largest magnitude, largest
first (ties in the encoder's column order), leaves out the ones that are exactly 0 (a missing
value, the dummies of other categories), and carries the intercept and ``rest``, the sum of
the contributions it does not list, so ``intercept + sum(values) + rest`` is the raw output
whatever ``top_k`` is. On the mini-batch path the contributions of a batch are one matrix
product of the encoded frame the prediction is made from (the rows are encoded once);
rows the one-by-one path takes are explained one by one.

Examples
--------
>>> from riverops.models.batch import learn_in_order
>>> from riverops.models.specs import get_spec
>>> model = get_spec("logreg").build()
>>> rows = [{"x": 1.0, "c": "a"}, {"x": -1.0, "c": "b"}, {"x": 2.0, "c": "a"}]
>>> learn_in_order(model, rows * 20, [True, False, True] * 20)
>>> probas, (first, second, _) = predict_proba_explained(model, rows, top_k=1)
>>> [(c["feature"], round(c["value"], 3)) for c in first["contributions"]], round(first["rest"], 3)
([('c_a', 0.179)], 0.062)
>>> [(c["feature"], round(c["value"], 3)) for c in second["contributions"]]
[('x', -0.312)]
>>> import math
>>> raw = first["intercept"] + sum(c["value"] for c in first["contributions"]) + first["rest"]
>>> math.isclose(raw, math.log(probas[0][True] / probas[0][False]))
True
>>> explainable(get_spec("hoeffding-tree").build())
False
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from river import compose, linear_model

from riverops.models.batch import predict_frame, proba_rows
from riverops.models.specs import drop_missing

__all__ = ["Explanation", "explainable", "predict_proba_explained", "predict_explained"]

Explanation = dict[str, Any]
"""``{"intercept": float, "contributions": [{"feature": str, "value": float}], "rest": float}``,
the PredictionEvent's ``explanation`` field."""

_LINEAR = (linear_model.LogisticRegression, linear_model.LinearRegression)


def _linear_step(model: Any) -> Any | None:
    """The linear model whose weights explain ``model``'s outputs, or None."""
    # a pipeline passes isinstance checks for its last step's class: test it first
    if isinstance(model, compose.Pipeline):
        last = list(model.steps.values())[-1]
        return last if isinstance(last, _LINEAR) and not isinstance(last, compose.Pipeline) else None
    return model if isinstance(model, _LINEAR) else None


def explainable(model: Any) -> bool:
    """Whether :func:`predict_proba_explained` / :func:`predict_explained` can explain ``model``:
    a linear model, alone or at the end of a pipeline."""
    return _linear_step(model) is not None


def predict_proba_explained(model: Any, rows: Sequence[Mapping[str, Any]], *, top_k: int
                            ) -> tuple[list[dict[Hashable, float]], list[Explanation | None]]:
    """What :func:`~riverops.models.batch.predict_proba_batch` returns, and the explanation of
    each row (None where a contribution is not finite)."""
    return _explained(model, rows, top_k, proba=True)


def predict_explained(model: Any, rows: Sequence[Mapping[str, Any]], *, top_k: int
                      ) -> tuple[list[Any], list[Explanation | None]]:
    """What :func:`~riverops.models.batch.predict_batch` returns, and each row's explanation."""
    return _explained(model, rows, top_k, proba=False)


def _explained(model: Any, rows: Sequence[Mapping[str, Any]], top_k: int, *,
               proba: bool) -> tuple[list[Any], list[Explanation | None]]:
    linear = _linear_step(model)
    if linear is None:
        raise TypeError(f"{type(model).__name__} is not a linear model: it has no explanation")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    pipeline = isinstance(model, compose.Pipeline)
    frame = predict_frame(model, rows)
    outputs: list[Any]
    if frame is None:  # the one-by-one path, exactly as predict_proba_batch / predict_batch
        outputs, explanations = [], []
        for row in rows:
            x = drop_missing(row)
            encoded = model.transform_one(x) if pipeline else x
            outputs.append(linear.predict_proba_one(encoded) if proba else linear.predict_one(encoded))
            explanations.append(_explain_one(linear, encoded, top_k))
        return outputs, explanations
    encoded_frame = model.transform_many(frame) if pipeline else frame
    if proba:
        outputs = proba_rows(linear.predict_proba_many(encoded_frame))
    else:
        outputs = linear.predict_many(encoded_frame).tolist()
    names = [str(name) for name in encoded_frame.columns]
    weights = linear.weights
    w = np.array([weights.get(name, 0.0) for name in encoded_frame.columns], dtype=np.float64)
    contributions = encoded_frame.to_numpy(dtype=np.float64) * w
    return outputs, _top(contributions, names, float(linear.intercept), top_k)


def _top(contributions: np.ndarray, names: list[str], intercept: float,
         top_k: int) -> list[Explanation | None]:
    """The explanation of each row of an (events x features) contribution matrix."""
    k = min(top_k, contributions.shape[1])
    magnitude = np.abs(contributions)
    if k < contributions.shape[1]:
        # the k largest of each row, then those in order: O(n p) rather than a full sort
        picked = np.argpartition(-magnitude, k - 1, axis=1)[:, :k]
        picked.sort(axis=1)  # column order, so that ties below break by it
        order = np.argsort(-np.take_along_axis(magnitude, picked, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(picked, order, axis=1)
    else:
        top = np.argsort(-magnitude, axis=1, kind="stable")
    values = np.take_along_axis(contributions, top, axis=1)
    if k < contributions.shape[1]:
        rest = contributions.sum(axis=1) - values.sum(axis=1)
    else:  # all listed (the zeros left out add nothing): nothing is left, exactly
        rest = np.zeros(contributions.shape[0])
    finite = np.isfinite(contributions).all(axis=1)
    features = np.array(names, dtype=object)[top]
    out: list[Explanation | None] = []
    # strict=False: the rows have k entries by construction (strict costs ~40% here)
    for row_features, row, left, ok in zip(features.tolist(), values.tolist(), rest.tolist(),
                                           finite.tolist(), strict=False):
        if not ok:
            out.append(None)
            continue
        listed = [{"feature": f, "value": v} for f, v in zip(row_features, row, strict=False) if v]
        out.append({"intercept": intercept, "contributions": listed, "rest": left})
    return out


def _explain_one(linear: Any, encoded: Mapping[Any, Any], top_k: int) -> Explanation | None:
    """The explanation of one encoded row (the one-by-one path)."""
    names = [str(name) for name in encoded]
    if not names:
        return {"intercept": float(linear.intercept), "contributions": [], "rest": 0.0}
    weights = linear.weights
    values = np.array([[weights.get(name, 0.0) * float(value) for name, value in encoded.items()]],
                      dtype=np.float64)
    return _top(values, names, float(linear.intercept), top_k)[0]
