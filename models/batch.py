"""Batched predict and learn: the hot path of the scorer and the learner.

A batch of feature rows becomes one pandas DataFrame and goes through River's
``predict_proba_many`` / ``predict_many`` / ``learn_many`` when every step of the model has
a mini-batch method (the zoo's linear specs); other models (the trees, the forest) get
``*_one`` calls in row order. Either way ``None`` and NaN values are missing features.

Missing features on the mini-batch path: the DataFrame holds NaN where a row lacks a
feature, and River's ``StandardScaler.learn_many`` would turn that feature's variance, and
then every prediction, into NaN. The linear specs start with
:class:`riverops.models.specs.FeatureEncoder`, which keeps per-column statistics of the observed
values and writes 0 for a missing one: exactly what ``*_one`` does with an absent key, so
batched predictions match one-by-one ones (to 1e-9, tested) with or without holes. The cost
is two NaN masks per batch, lost in the noise below. A model not known to read NaN that way
gets the one-by-one path for any batch with a hole, and so does a batch in which one feature
has both string and numeric values, or whose feature names are not strings.

``learn_many`` takes one mean-gradient step per batch where ``learn_one`` takes one per
row: the batched learner is mini-batch SGD, not the same model. On Phishing and Agrawal its
test accuracy stayed within 1 point of the one-by-one learner for batches of 8 to 1000.

Measured with ``python -m riverops.models.batch`` (2-core machine shared with other jobs, best of 3,
20 numeric features, 1000-row batches, DataFrame build and per-row outputs included), in
events/s, ``logreg`` spec (plain ``StandardScaler | LogisticRegression`` in brackets):

- predict + learn, one by one: ~27k (~32k);
- predict + learn, batched: ~130k (~128k), with two DataFrame builds per batch;
- ``predict_proba_batch`` alone, the scorer's share: ~270k (~250k);
- ``learn_batch`` alone, the learner's share: ~310k (~270k);
- the same with 10% of the values missing: ~28k, ~125k, ~260k, ~265k.

Per 1000 rows: ~1.8 ms to build the DataFrame, ~0.6 ms of ``predict_proba_many``,
~0.8 ms of ``learn_many``, ~1 ms to turn probabilities back into per-row dicts.

Small batches predict one by one: the mini-batch path costs ~0.7 ms per call whatever its
size (pandas and River's frame handling), ``predict_proba_one`` ~7 µs per row, so below
:data:`PREDICT_MANY_FROM` rows the rows go one by one (measured 2026-12-06 on the bench
model: 10 rows 0.74 ms batched against 0.07 ms one by one, 100 rows 0.84 against 0.73,
1000 rows 5.2 against 6.8). A scorer at 5k events/s sees batches of 10-50 rows: the fixed
cost was most of its time there, and of its latency. Learning is not affected (a
``learn_many`` is a different step from a ``learn_one``; :func:`learn_batch` keeps the
mini-batch path for any size).

Examples
--------
>>> from riverops.models.specs import get_spec
>>> model = get_spec("logreg").build()
>>> rows = [{"x": 1.0, "c": "a"}, {"x": -1.0, "c": None}, {"x": 2.0}]
>>> learn_batch(model, rows, [True, False, True])
>>> [round(p[True], 4) for p in predict_proba_batch(model, rows)]
[0.5011, 0.4989, 0.5016]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import pandas as pd
from river import base, compose, preprocessing

from riverops.models.specs import FeatureEncoder, drop_missing

__all__ = [
    "to_frame", "supports_many", "batch_frame", "predict_frame", "PREDICT_MANY_FROM", "proba_rows", "predict_proba_batch", "predict_batch",
    "labels_and_scores",
    "learn_batch", "learn_in_order",
]


def to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """The rows as one DataFrame: numeric and boolean features as float64 with NaN where
    missing, string features as strings; ``None`` when a feature mixes strings and numbers
    (the caller then takes the one-by-one path).

    >>> frame = to_frame([{"a": 1, "b": True, "s": "x"}, {"a": None, "s": None}])
    >>> frame.to_dict("list")
    {'a': [1.0, nan], 'b': [1.0, nan], 's': ['x', nan]}
    >>> to_frame([{"a": 1.0}, {"a": "x"}]) is None
    True
    """
    frame = pd.DataFrame(list(rows))
    for name, dtype in frame.dtypes.items():
        if dtype == "float64" or isinstance(dtype, pd.StringDtype):
            continue
        if pd.api.types.is_numeric_dtype(dtype):  # int, bool
            frame[name] = frame[name].astype("float64")
            continue
        kind = pd.api.types.infer_dtype(frame[name], skipna=True)
        if kind == "empty":
            frame = frame.drop(columns=name)
        elif kind == "string":
            continue  # strings with None: FeatureEncoder gives None no dummy
        elif kind in ("boolean", "integer", "floating", "mixed-integer-float", "decimal"):
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        else:
            return None
    return frame


def supports_many(model: Any) -> bool:
    """Whether every step of ``model`` has a mini-batch method.

    >>> from river import linear_model, tree
    >>> supports_many(FeatureEncoder() | linear_model.LogisticRegression())
    True
    >>> supports_many(tree.HoeffdingTreeClassifier())
    False
    """
    if isinstance(model, compose.Pipeline):
        return all(supports_many(step) for step in model.steps.values())
    if isinstance(model, compose.TransformerUnion):
        return all(supports_many(step) for step in model.transformers.values())
    return isinstance(
        model,
        (
            base.MiniBatchTransformer,
            base.MiniBatchSupervisedTransformer,
            base.MiniBatchClassifier,
            base.MiniBatchRegressor,
        ),
    )


def _reads_nan_as_missing(model: Any) -> bool:
    """Whether NaN input reaches neither a learned statistic nor a step after the first."""
    # a pipeline passes isinstance checks for its last step's class: test it first
    if isinstance(model, compose.Pipeline):
        return isinstance(next(iter(model.steps.values())), FeatureEncoder)
    return isinstance(model, FeatureEncoder)


PREDICT_MANY_FROM = 100
"""Predictions of fewer rows than this go one by one (see the module docstring)."""


def predict_frame(model: Any, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """:func:`batch_frame` for predicting: ``None`` (one by one) below
    :data:`PREDICT_MANY_FROM` rows too."""
    return None if len(rows) < PREDICT_MANY_FROM else batch_frame(model, rows)


def batch_frame(model: Any, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """The DataFrame to send down the mini-batch path, or ``None`` for the one-by-one path."""
    if not rows or not supports_many(model):
        return None
    frame = to_frame(rows)
    if frame is None or frame.shape[1] == 0:
        return None
    if not all(isinstance(name, str) for name in frame.columns):  # narwhals needs str names
        return None
    if not _reads_nan_as_missing(model) and frame.isna().to_numpy().any():
        return None
    return frame


def predict_proba_batch(model: Any, rows: Sequence[Mapping[str, Any]]) -> list[dict[Hashable, float]]:
    """Class probabilities for each row, in row order (``{}`` before the model saw a label)."""
    frame = predict_frame(model, rows)
    if frame is None:
        return [model.predict_proba_one(drop_missing(row)) for row in rows]
    return proba_rows(model.predict_proba_many(frame))


def labels_and_scores(model: Any, rows: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[Hashable | None], list[dict[str, float]]]:
    """Each row's predicted class (the most probable, the first on a tie; None before the
    model saw a label) and its class probabilities keyed by the class as a string: the
    scorer's output, built straight from the probability matrix (~5x cheaper than through
    :func:`predict_proba_batch`'s dicts)."""
    frame = predict_frame(model, rows)
    if frame is None:
        probas = [model.predict_proba_one(drop_missing(row)) for row in rows]
        return ([max(p, key=p.__getitem__) if p else None for p in probas],
                [{str(k): float(v) for k, v in p.items()} for p in probas])
    matrix = model.predict_proba_many(frame)
    classes = list(matrix.columns)
    if not classes:
        return [None] * len(rows), [{} for _ in rows]
    values = matrix.to_numpy(dtype="float64")
    names = [str(c) for c in classes]
    return ([classes[i] for i in values.argmax(axis=1).tolist()],
            [dict(zip(names, row, strict=False)) for row in values.tolist()])


def proba_rows(probas: pd.DataFrame) -> list[dict[Hashable, float]]:
    """A ``predict_proba_many`` frame as one ``{label: probability}`` dict per row."""
    labels = list(probas.columns)
    # strict=False: rows have one value per label by construction, and strict costs ~40%
    return [dict(zip(labels, values, strict=False)) for values in probas.to_numpy().tolist()]


def predict_batch(model: Any, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """A prediction for each row, in row order; for regressors (and classifiers' labels)."""
    frame = predict_frame(model, rows)
    if frame is None:
        return [model.predict_one(drop_missing(row)) for row in rows]
    predicted: list[Any] = model.predict_many(frame).tolist()
    return predicted


def learn_batch(model: Any, rows: Sequence[Mapping[str, Any]], labels: Sequence[Any]) -> None:
    """Learn from the rows and their labels: one ``learn_many`` call, or ``learn_one`` in order.

    One ``learn_many`` call is one gradient step for a linear model: right for a stream of
    small batches, wrong for training on a whole table (use :func:`learn_in_order`).
    """
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    frame = batch_frame(model, rows)
    if frame is None:
        for row, label in zip(rows, labels, strict=True):
            model.learn_one(drop_missing(row), label)
        return
    model.learn_many(frame, pd.Series(list(labels)))


def learn_in_order(model: Any, rows: Sequence[Mapping[str, Any]], labels: Sequence[Any]) -> None:
    """Learn one row at a time, in order: what training from a table wants.

    ``learn_many`` takes one gradient step per call, so :func:`learn_batch` on a large
    table moves a linear model by a single step; per-row learning is ~27k rows/s here.
    """
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    for row, label in zip(rows, labels, strict=True):
        model.learn_one(drop_missing(row), label)


def _benchmark(*, n: int = 20_000, batch: int = 1000, missing: float = 0.0,
               repeats: int = 3) -> dict[str, float]:
    """Events/s on 20-feature rows, best of ``repeats`` runs, for ``python -m riverops.models.batch``."""
    import random
    import time

    from river import linear_model

    from riverops.models.specs import get_spec

    rng = random.Random(0)
    names = [f"f{i}" for i in range(20)]
    rows = [{k: None if rng.random() < missing else rng.gauss(0, 1) for k in names} for _ in range(n)]
    labels = [(row["f0"] or 0.0) + rng.gauss(0, 1) > 0 for row in rows]
    chunks = [(rows[i : i + batch], labels[i : i + batch]) for i in range(0, n, batch)]

    def one_by_one(model: Any) -> None:
        for row, y in zip(rows, labels, strict=True):
            x = drop_missing(row)
            model.predict_proba_one(x)
            model.learn_one(x, y)

    def predict(model: Any) -> None:
        for xs, _ in chunks:
            predict_proba_batch(model, xs)

    def learn(model: Any) -> None:
        for xs, ys in chunks:
            learn_batch(model, xs, ys)

    def both(model: Any) -> None:
        for xs, ys in chunks:
            predict_proba_batch(model, xs)
            learn_batch(model, xs, ys)

    makers: dict[str, Callable[[], Any]] = {"logreg": get_spec("logreg").build}
    if not missing:  # the plain pipeline would take the one-by-one path on holes
        makers["StandardScaler|LogisticRegression"] = lambda: (
            preprocessing.StandardScaler() | linear_model.LogisticRegression()
        )
    runs: dict[str, Callable[[Any], None]] = {
        "predict+learn one-by-one": one_by_one,
        "predict+learn batched": both,
        "predict_proba_batch": predict,
        "learn_batch": learn,
    }
    results: dict[str, float] = {}
    for name, make in makers.items():
        for label, run in runs.items():
            best = float("inf")
            for _ in range(repeats):
                model = make()
                learn_batch(model, *chunks[0])  # predict on a fitted model
                started = time.perf_counter()
                run(model)
                best = min(best, time.perf_counter() - started)
            results[f"{name}: {label}"] = n / best
    return results


if __name__ == "__main__":
    for share in (0.0, 0.1):
        for label, rate in _benchmark(missing=share).items():
            print(f"{label:<62} missing={share:>4.0%}: {rate:>9,.0f} events/s")
