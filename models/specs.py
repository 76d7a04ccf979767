"""Model specs: a name, a task and a factory that builds a fresh River estimator.

A spec's default hyperparameters are plain scalars stored verbatim, so a registry record
(``ModelVersion.spec`` + ``params`` + ``seed``) is enough to rebuild the same estimator.
Randomness enters only through ``seed``, handed to the estimators that take one.

Feature events carry floats, booleans, strings and ``None``. :func:`drop_missing` turns
``None`` (and float NaN) into an absent key, which every River model reads as missing.
The trees take strings as nominal features natively; the linear specs start with a
:class:`FeatureEncoder` that scales the numbers and one-hot encodes the strings, in the
one-by-one and the mini-batch paths alike (see :mod:`riverops.models.batch`).

Examples
--------
>>> spec = get_spec("logreg")
>>> spec.task
'binary'
>>> model = spec.build(seed=1)
>>> model.learn_one(drop_missing({"amount": 12.5, "country": "fr", "vip": None}), True)
>>> round(model.predict_proba_one({"amount": 12.5, "country": "fr"})[True], 3)
0.502
>>> get_spec("nope")
Traceback (most recent call last):
...
riverops.schemas.errors.ConfigError: unknown model spec 'nope'; known specs: arf, hat, hoeffding-tree, linreg, logreg, tree-regressor
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
from river import base, compose, forest, linear_model, optim, preprocessing, tree

from riverops.schemas.errors import ConfigError
from riverops.schemas.events import Task

__all__ = ["drop_missing", "FeatureEncoder", "ModelSpec", "ZOO", "get_spec"]

_K = TypeVar("_K", bound=Hashable)


def drop_missing(x: Mapping[_K, Any]) -> dict[_K, Any]:
    """A copy of ``x`` without its missing values (``None`` or float NaN).

    River reads an absent key as a missing feature; a ``None`` would instead reach a
    scaler as a number (a crash) or a tree as the category ``None``, and a NaN would poison
    running statistics. Rows from pandas carry NaN for missing values, hence both.

    >>> drop_missing({"a": 1.0, "b": None, "c": "x", "d": float("nan"), "e": False})
    {'a': 1.0, 'c': 'x', 'e': False}
    """
    return {k: v for k, v in x.items() if v is not None and v == v}


class FeatureEncoder(preprocessing.StandardScaler):
    """Standard-scale the numeric (and boolean) features, one-hot encode the strings.

    The linear specs' first step, in the one-by-one and the mini-batch path alike. A missing
    value (an absent key, NaN in a batch) is left out of the running statistics and comes
    out as 0 (no dummy for a string): a linear model then gives the feature no weight and no
    gradient, as it does for an absent key, so ``predict_proba_many`` on a fitted model
    matches ``predict_proba_one`` even with holes in the batch.

    Why not River's ``TransformerUnion(SelectType(Number) | StandardScaler(),
    SelectType(str) | OneHotEncoder())``: ``SelectType`` has no ``transform_many``,
    ``StandardScaler.learn_many`` turns a feature's variance into NaN from one missing
    value, ``OneHotEncoder.transform_many`` fails on a batch without strings, and, once
    those were patched, the union still cost ~25% of the batched and ~40% of the one-by-one
    throughput.

    Examples
    --------
    >>> enc = FeatureEncoder()
    >>> enc.learn_many(pd.DataFrame({"a": [1.0, np.nan, 3.0], "c": ["x", "y", np.nan]}))
    >>> (enc.means["a"], enc.vars["a"], enc.counts["a"])
    (2.0, 1.0, 2)
    >>> enc.transform_many(pd.DataFrame({"a": [3.0, np.nan], "c": ["x", np.nan]})).to_dict("list")
    {'a': [1.0, 0.0], 'c_x': [1.0, 0.0]}
    >>> enc.transform_one({"a": 3.0, "c": "x"})
    {'a': 1.0, 'c_x': 1}
    """

    def __init__(self, with_std: bool = True) -> None:
        super().__init__(with_std=with_std)  # no rolling window: running statistics only

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        if any(isinstance(v, str) for v in x.values()):  # most rows skip the copy
            x = {k: v for k, v in x.items() if not isinstance(v, str)}
        preprocessing.StandardScaler.learn_one(self, x)

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        # StandardScaler.transform_one, plus the strings, and with .get: River's indexing
        # of its defaultdicts would store every feature name a prediction ever shows
        means, variances = self.means, self.vars
        out: dict[Hashable, Any] = {}
        for k, v in x.items():
            if isinstance(v, str):
                out[f"{k}_{v}"] = 1
            elif not self.with_std:
                out[k] = v - means.get(k, 0.0)
            else:
                var = variances.get(k, 0.0)
                out[k] = (v - means.get(k, 0.0)) / var**0.5 if var else 0.0
        return out

    def learn_many(self, X: pd.DataFrame) -> None:
        X = _numeric(X)
        if X.shape[1] == 0:
            return
        values = X.to_numpy(dtype=np.float64)
        observed = ~np.isnan(values)
        counts = observed.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):  # all-NaN columns are skipped
            batch_means = np.where(observed, values, 0.0).sum(axis=0) / counts
            centred = np.where(observed, values - batch_means, 0.0)
            batch_vars = (centred * centred).sum(axis=0) / counts
        for col, new_mean, new_var, new_count in zip(
            X.columns, batch_means.tolist(), batch_vars.tolist(), counts.tolist(), strict=True
        ):
            if new_count == 0:
                continue
            old_mean, old_var, old_count = self.means[col], self.vars[col], self.counts[col]
            total = old_count + new_count
            a, b = old_count / total, new_count / total
            self.means[col] = a * old_mean + b * new_mean
            if self.with_std:
                self.vars[col] = a * old_var + b * new_var + a * b * (old_mean - new_mean) ** 2
            self.counts[col] = total

    def transform_many(self, X: pd.DataFrame) -> pd.DataFrame:
        numeric = _numeric(X)
        parts: list[pd.DataFrame] = []
        if numeric.shape[1]:
            parts.append(self._scale_many(numeric))
        if numeric.shape[1] < X.shape[1]:
            strings = X.drop(columns=numeric.columns)
            parts.append(pd.get_dummies(strings, prefix_sep="_", dtype="float64"))
        if len(parts) == 1:
            return parts[0]
        return pd.concat(parts, axis=1) if parts else X

    def _scale_many(self, X: pd.DataFrame) -> pd.DataFrame:
        # River's transform_many leaves x - mean where the variance is 0, transform_one
        # writes 0: do as transform_one, so that both paths agree
        columns = list(X.columns)
        values = X.to_numpy(dtype=np.float64)
        means = np.array([self.means.get(c, 0.0) for c in columns], dtype=np.float64)
        scaled = values - means
        if self.with_std:
            stds = np.sqrt([self.vars.get(c, 0.0) for c in columns])
            with np.errstate(invalid="ignore", divide="ignore"):
                scaled = np.where(stds > 0, scaled / stds, 0.0)
        scaled[np.isnan(scaled)] = 0.0  # a missing value weighs nothing
        return pd.DataFrame(scaled, columns=columns, index=X.index)


def _numeric(X: pd.DataFrame) -> pd.DataFrame:
    """The numeric columns of ``X`` (``riverops.models.batch`` hands numbers over as float64)."""
    keep = [pd.api.types.is_numeric_dtype(dtype) for dtype in X.dtypes]
    return X if all(keep) else X.loc[:, keep]


def _logreg(*, learning_rate: float, l2: float, intercept_lr: float) -> compose.Pipeline:
    return FeatureEncoder() | linear_model.LogisticRegression(
        optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=intercept_lr
    )


def _linreg(*, learning_rate: float, l2: float, intercept_lr: float) -> compose.Pipeline:
    return FeatureEncoder() | linear_model.LinearRegression(
        optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=intercept_lr
    )


def _hat(*, grace_period: int, delta: float, seed: int | None) -> base.Classifier:
    return tree.HoeffdingAdaptiveTreeClassifier(grace_period=grace_period, delta=delta, seed=seed)


_SPLIT_CRITERIA = ("gini", "info_gain", "hellinger")
_LEAF_PREDICTIONS = ("mc", "nb", "nba")


def _hoeffding_tree(*, grace_period: int, delta: float, tau: float, split_criterion: str,
                    leaf_prediction: str) -> base.Classifier:
    # River prints a warning and falls back to its default on an unknown option: refuse it
    for name, value, known in (("split_criterion", split_criterion, _SPLIT_CRITERIA),
                               ("leaf_prediction", leaf_prediction, _LEAF_PREDICTIONS)):
        if value not in known:
            raise ConfigError(f"model spec 'hoeffding-tree': {name} must be one of "
                              f"{', '.join(known)}, not {value!r}")
    return tree.HoeffdingTreeClassifier(
        grace_period=grace_period, delta=delta, tau=tau, split_criterion=split_criterion,
        leaf_prediction=leaf_prediction,
    )


def _arf(*, n_models: int, grace_period: int, seed: int | None) -> base.Classifier:
    return forest.ARFClassifier(n_models=n_models, grace_period=grace_period, seed=seed)


def _tree_regressor(*, grace_period: int, delta: float, seed: int | None) -> base.Regressor:
    # River's default leaf model, a bare LinearRegression, fails on string features and
    # diverges on unscaled ones (MAE 128 vs 2.1 on Friedman x1000): give it an encoder.
    leaf_model = cast(base.Regressor, FeatureEncoder() | linear_model.LinearRegression())
    return tree.HoeffdingAdaptiveTreeRegressor(
        grace_period=grace_period, delta=delta, leaf_model=leaf_model, seed=seed
    )


@dataclass(frozen=True)
class ModelSpec:
    """How to build one kind of model: ``factory(**params)`` returns a fresh estimator.

    ``params`` are the default hyperparameters (scalars, stored verbatim, read-only);
    :meth:`build` overrides some of them and adds ``seed`` when the factory takes one.
    """

    name: str
    task: Task
    factory: Callable[..., Any]
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def seeded(self) -> bool:
        """Whether the estimator draws random numbers (and so takes a ``seed``)."""
        return "seed" in inspect.signature(self.factory).parameters

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked against the defaults: known names, values of the default's type.

        Integral floats become ints where the default is an int, because registry records
        carry params as Avro doubles; ints become floats where the default is a float.

        >>> get_spec("arf").check_params({"n_models": 3.0})
        {'n_models': 3}
        >>> get_spec("hat").check_params({"depth": 3})
        Traceback (most recent call last):
        ...
        riverops.schemas.errors.ConfigError: model spec 'hat' takes no param 'depth' (its params: delta, grace_period)
        >>> get_spec("hat").check_params({"grace_period": "fifty"})
        Traceback (most recent call last):
        ...
        riverops.schemas.errors.ConfigError: model spec 'hat': param 'grace_period' takes an int, not 'fifty'
        """
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ConfigError(
                f"model spec {self.name!r} takes no param {', '.join(map(repr, unknown))} "
                f"(its params: {', '.join(sorted(self.params))})"
            )
        return {key: self._checked(key, value) for key, value in params.items()}

    def _checked(self, key: str, value: Any) -> Any:
        default = self.params[key]
        if default is None or type(value) is type(default):
            return value
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                return int(value)
        elif isinstance(default, float):
            if isinstance(value, int) and not isinstance(value, bool):
                return float(value)
        raise ConfigError(
            f"model spec {self.name!r}: param {key!r} takes {_kind(default)}, not {value!r}"
        )

    def build(self, *, seed: int | None = None, **params: Any) -> Any:
        """A fresh, untrained estimator with the default params updated by ``params``
        (checked by :meth:`check_params`). Specs that draw no random numbers ignore ``seed``.

        >>> get_spec("arf").build(seed=7, n_models=3.0).n_models
        3
        """
        merged = {**self.params, **self.check_params(params)}
        if self.seeded:
            merged["seed"] = seed
        return self.factory(**merged)


def _kind(default: Any) -> str:
    """How an error names the type of a param's default."""
    names = {bool: "a boolean", int: "an int", float: "a number", str: "a string"}
    return names.get(type(default), type(default).__name__)


_LINEAR = {"learning_rate": 0.01, "l2": 0.0, "intercept_lr": 0.01}
_TREE = {"grace_period": 200, "delta": 1e-7}

ZOO: Mapping[str, ModelSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ModelSpec("logreg", "binary", _logreg, _LINEAR,
                      "logistic regression on scaled numbers and one-hot strings"),
            ModelSpec("hat", "binary", _hat, _TREE, "Hoeffding adaptive tree classifier"),
            ModelSpec("hoeffding-tree", "binary", _hoeffding_tree,
                      {**_TREE, "tau": 0.05, "split_criterion": "info_gain", "leaf_prediction": "nba"},
                      "Hoeffding tree classifier (VFDT): no drift adaptation of its own"),
            ModelSpec("arf", "binary", _arf, {"n_models": 5, "grace_period": 50},
                      "adaptive random forest classifier (slow: ~0.4k events/s at 10 trees)"),
            ModelSpec("linreg", "regression", _linreg, _LINEAR,
                      "linear regression on scaled numbers and one-hot strings"),
            ModelSpec("tree-regressor", "regression", _tree_regressor, _TREE,
                      "Hoeffding adaptive tree regressor"),
        )
    }
)
"""Every spec riverops knows, by name. ``hat``, ``hoeffding-tree`` and ``arf`` also learn
multiclass targets; a spec names one task, the one its registry records and metrics assume."""


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name``; a :class:`ConfigError` naming the known specs otherwise."""
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(
            f"unknown model spec {name!r}; known specs: {', '.join(sorted(ZOO))}"
        ) from None
