"""The retrainer's pure core: a window of feedback in, a fresh candidate and a fair comparison out.

:func:`feedback_frame` turns recent FeedbackEvent dicts into one pandas DataFrame, one row
per event in event-time order; :func:`retrain` trains a fresh model from a spec on the head
of that window and scores it and the champion on the same held-out tail, which the
candidate never learned from. No Kafka and no clock: the same window, spec, params and
seed give the same model, byte for byte, hence the same artifact sha256.

Why :func:`riverops.models.batch.learn_in_order` (``learn_one`` per row), not ``learn_batch``:
``learn_many`` takes one mean-gradient step per mini-batch, so a fresh model barely leaves
its initial weights on a bounded window. Measured on Phishing (train on the first 1000
rows, score the last 250), ``logreg``: one by one, ROC AUC 0.968 and log loss 0.256; in
batches of 100 (10 steps), 0.953 and 0.660, every score within 0.46..0.55. The retrainer
is off the hot path, so it takes one step per event in event-time order: River's own
learning rule, deterministic.

Byte-for-byte: River's tree splitters (``GaussianSplitter``) make a ``proba.Gaussian()``
per class and feature without a seed, and each holds a ``random.Random`` seeded from the
OS, used only by ``sample()``, which no tree calls. Pickled as is, two identical trees
differ in those states, so :func:`retrain` pins the unseeded distributions' generators to
a fixed seed before it returns: the model learns and predicts exactly as before.

ROC AUC here is exact (the Mann-Whitney statistic, ties counted half), not River's
10-threshold approximation, which reads 0.5 for any scores that sit in one tenth of [0, 1].

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> records = [{"event_id": f"e{i}", "event_time": t0 + timedelta(seconds=i),
...             "features": {"x": float(i % 7)}, "label": i % 7 > 3,
...             "label_time": t0, "predictions": []} for i in range(50)]
>>> frame = feedback_frame(records, window_events=40)
>>> len(frame), frame["event_id"].iloc[0], [c for c in frame.columns if c.startswith("feature:")]
(40, 'e10', ['feature:x'])
>>> result = retrain(frame, spec_name="logreg", seed=1, min_train=20)
>>> result.train_samples, result.holdout_samples, result.champion_metrics
(32, 8, {})
>>> sorted(result.metrics)
['accuracy', 'log_loss', 'roc_auc']
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from river import proba

from riverops.models.batch import learn_in_order, predict_batch, predict_proba_batch
from riverops.models.labels import coerce_label, positive_score
from riverops.models.specs import get_spec
from riverops.roles.joiner import Source
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import Task

__all__ = [
    "FEATURE_PREFIX",
    "RetrainResult",
    "feedback_frame",
    "feature_rows",
    "retrain",
    "binary_metrics",
    "regression_metrics",
]

FEATURE_PREFIX = "feature:"
"""Feature columns are named ``feature:<name>``: a feature may be called ``label``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_EPS = 1e-15  # log loss clips probabilities to [eps, 1 - eps], as River and sklearn do


def _micros(value: Any, what: str, event_id: str) -> int:
    """A timestamp (tz-aware datetime, naive = UTC, or epoch milliseconds) in epoch µs."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // _US
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return int(value) * 1000
    raise InvalidEventError(f"feedback {event_id}: {what} is not a timestamp: {value!r}")


def _check(record: Mapping[str, Any]) -> tuple[str, int]:
    """The record's event_id and event time (µs) if it can be trained on; else raise."""
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEventError("feedback without an event_id")
    if record.get("label") is None:
        raise InvalidEventError(f"feedback {event_id} has no label")
    features = record.get("features")
    if not isinstance(features, Mapping):
        raise InvalidEventError(f"feedback {event_id} has no features map")
    if record.get("label_time") is not None:
        _micros(record["label_time"], "label_time", event_id)
    for name, value in features.items():
        if not isinstance(name, str):
            raise InvalidEventError(f"feedback {event_id}: feature name {name!r} is not a string")
        if isinstance(value, float) and math.isinf(value):
            raise InvalidEventError(f"feedback {event_id}: feature {name!r} is infinite")
    return event_id, _micros(record.get("event_time"), "event_time", event_id)


def _score_or_nan(scores: Mapping[str, float]) -> float:
    score = positive_score(scores)
    return math.nan if score is None else score


def feedback_frame(
    records: Iterable[Mapping[str, Any]],
    *,
    window_events: int | None = None,
    window_seconds: float | None = None,
    sources: Sequence[Source] | None = None,
    on_invalid: Callable[[Mapping[str, Any], InvalidEventError], None] | None = None,
) -> pd.DataFrame:
    """One row per feedback event of the window, sorted by (event_time, event_id).

    Duplicates (same event_id) keep the first record seen. The window is the last
    ``window_events`` events and the events of the last ``window_seconds`` seconds of
    event time, ending at the latest event time seen (no clock); when both are given
    both limits apply, so the smaller window wins. ``None`` means no limit.

    Columns: ``event_id``, ``event_time`` and ``label_time`` (UTC), ``label`` (as sent),
    ``champion_version``, ``champion_prediction`` and ``champion_score`` (P(True), NaN if
    unknown) from the first champion prediction made for the event, ``topic``,
    ``partition`` and ``offset`` when ``sources`` (one per record) are given, and one
    ``feature:<name>`` column per feature of the window, in name order, NaN or None where
    an event lacks it. Sorting by event_id among equal times and naming the columns in
    order make the frame, and the model trained on it, independent of arrival order.

    A record that cannot be trained on raises InvalidEventError or, with ``on_invalid``,
    is handed to it and left out.
    """
    if window_events is not None and window_events < 1:
        raise ConfigError(f"window_events must be at least 1, got {window_events}")
    if window_seconds is not None and not (window_seconds > 0 and math.isfinite(window_seconds)):
        raise ConfigError(f"window_seconds must be a positive number, got {window_seconds}")
    records = list(records)
    if sources is not None and len(sources) != len(records):
        raise ConfigError(f"{len(records)} records but {len(sources)} sources")
    kept: dict[str, tuple[int, int]] = {}  # event_id -> (event time µs, index in records)
    for i, record in enumerate(records):
        try:
            event_id, micros = _check(record)
        except InvalidEventError as exc:
            if on_invalid is None:
                raise
            on_invalid(record, exc)
            continue
        kept.setdefault(event_id, (micros, i))
    order = sorted(kept.items(), key=lambda item: (item[1][0], item[0]))
    if window_seconds is not None and order:
        cutoff = order[-1][1][0] - window_seconds * 1e6
        order = [item for item in order if item[1][0] > cutoff]
    if window_events is not None:
        order = order[-window_events:]
    return _build(records, [i for _, (_, i) in order], sources)


def _build(records: list[Mapping[str, Any]], picked: list[int],
           sources: Sequence[Source] | None) -> pd.DataFrame:
    window = [records[i] for i in picked]
    columns: dict[str, Any] = {
        "event_id": [r["event_id"] for r in window],
        "event_time": pd.to_datetime(
            [_micros(r["event_time"], "event_time", r["event_id"]) for r in window],
            unit="us", utc=True),
        "label_time": pd.to_datetime(
            [_micros(r.get("label_time"), "label_time", r["event_id"])
             if r.get("label_time") is not None else None for r in window],
            unit="us", utc=True),
        "label": pd.Series([r["label"] for r in window], dtype=object),
    }
    champions = [
        next((p for p in r.get("predictions") or () if p.get("variant") == "champion"), None)
        for r in window
    ]
    columns["champion_version"] = pd.array(
        [int(p["version"]) if p else None for p in champions], dtype="Int64")
    columns["champion_prediction"] = pd.Series(
        [p.get("prediction") if p else None for p in champions], dtype=object)
    columns["champion_score"] = np.array(
        [_score_or_nan(p.get("scores") or {}) if p else math.nan for p in champions],
        dtype=np.float64)
    if sources is not None:
        picked_sources = [sources[i] for i in picked]
        columns["topic"] = pd.Series([s[0] for s in picked_sources], dtype=object)
        columns["partition"] = np.array([s[1] for s in picked_sources], dtype=np.int64)
        columns["offset"] = np.array([s[2] for s in picked_sources], dtype=np.int64)
    for name in sorted({name for r in window for name in r["features"]}):
        columns[FEATURE_PREFIX + name] = pd.Series([r["features"].get(name) for r in window])
    return pd.DataFrame(columns)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def feature_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The feature dicts of the frame's rows, keyed by feature name, without missing values
    (River reads an absent key as missing).

    >>> feature_rows(pd.DataFrame({"feature:a": [1.0, float("nan")], "feature:b": ["x", None],
    ...                            "label": [True, False]}))
    [{'a': 1.0, 'b': 'x'}, {}]
    """
    cols = [c for c in frame.columns if isinstance(c, str) and c.startswith(FEATURE_PREFIX)]
    cut = len(FEATURE_PREFIX)
    return [
        {c[cut:]: v for c, v in row.items() if not _missing(v)}
        for row in frame[cols].to_dict("records")
    ]


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


def _evaluate_model(task: Task, model: Any, rows: list[dict[str, Any]],
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


def _evaluate_recorded(task: Task, tail: pd.DataFrame, y: list[Any]) -> tuple[dict[str, float], int]:
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


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """A fresh candidate model, how it compares with the champion, and its lineage.

    ``train_rows`` and ``holdout_rows`` are ``[start, stop)`` row positions in the frame
    in event-time order; ``training_data`` spans the offsets of the whole window, head
    and tail, per (topic, partition) (as the learner's snapshots do): the split is a
    function of the window, so replaying those spans with the same window rule, spec,
    params and seed rebuilds the model.
    """

    model: Any
    spec: str
    task: Task
    params: dict[str, Any]
    seed: int | None
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float]  # {} when there is no champion to compare with
    train_samples: int
    holdout_samples: int
    champion_samples: int  # holdout rows the champion answered
    train_rows: tuple[int, int]
    holdout_rows: tuple[int, int]
    window_start: datetime  # event time of the first row
    holdout_start: datetime  # event time of the first holdout row
    window_end: datetime  # event time of the last row
    training_data: list[dict[str, Any]] = field(default_factory=list)

    @property
    def samples(self) -> int:
        """Events the model learned from (``Lineage.samples``)."""
        return self.train_samples

    @property
    def metrics(self) -> dict[str, float]:
        """The registry record's metrics: the candidate's under plain names, the
        champion's on the same holdout prefixed ``champion_``."""
        return {**self.candidate_metrics,
                **{f"champion_{k}": v for k, v in self.champion_metrics.items()}}


def _pin_idle_rngs(model: Any) -> None:
    """Seed the generator of every unseeded River distribution in ``model`` with 0.

    They exist for ``sample()``, which learning and prediction never call (see the module
    docstring), so this changes the pickle, not the model's behaviour.
    """
    seen: set[int] = set()
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float):
            continue
        seen.add(id(obj))
        if isinstance(obj, proba.base.Distribution) and obj.seed is None:
            obj._rng = random.Random(0)
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset | collections.deque):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("river.", "riverops.models.")):
            stack.extend(vars(obj).values())


def _spans(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if not {"topic", "partition", "offset"} <= set(frame.columns):
        return []
    spans = frame.groupby(["topic", "partition"], sort=True)["offset"].agg(["min", "max"])
    return [{"topic": str(topic), "partition": int(partition), "start": int(lo), "end": int(hi) + 1}
            for (topic, partition), (lo, hi) in zip(spans.index, spans.to_numpy(), strict=True)]


def _like(column: pd.Series, when: datetime) -> pd.Timestamp:
    """``when`` as a Timestamp comparable with ``column`` (UTC-aware or naive UTC)."""
    stamp = pd.Timestamp(when)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp if column.dt.tz is not None else stamp.tz_convert(None)


def _when(value: Any) -> datetime:
    stamp: datetime = pd.Timestamp(value).to_pydatetime()
    return stamp


def retrain(
    frame: pd.DataFrame,
    *,
    spec_name: str,
    seed: int | None,
    champion: Any = None,
    params: Mapping[str, Any] | None = None,
    holdout_fraction: float = 0.2,
    min_train: int = 100,
    holdout_rows: int | None = None,
    learn_since: datetime | None = None,
) -> RetrainResult:
    """Train ``spec_name`` afresh on the head of the window; score it and the champion on
    the tail (the last ``holdout_fraction`` of rows, at least one, never learned from).

    The champion is the River model given, which predicts the tail; with ``None``, the
    champion predictions recorded in the frame (what was served before the labels were
    known) are scored on the tail rows that have one; with neither there is no champion
    and ``champion_metrics`` is empty. A champion model that learned from the tail (the
    online learner's live model) would be favoured: pass the registry's frozen artifact.
    ``params`` override the spec's hyperparameters. ``holdout_rows`` sets the tail's
    length instead of ``holdout_fraction``, and ``learn_since`` leaves the rows before that
    event time out of training: two candidates trained from different starts can then be
    compared on the same tail (the retrainer's answer to a drift alarm).
    Raises InvalidEventError when the window leaves fewer than ``min_train`` rows to learn.
    """
    spec = get_spec(spec_name)
    task = spec.task
    if task == "multiclass":
        raise ConfigError(f"spec {spec_name!r} is multiclass: the retrainer scores binary and "
                          "regression models only")
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if min_train < 1:
        raise ConfigError(f"min_train must be at least 1, got {min_train}")
    overrides = dict(params or {})
    model = spec.build(seed=seed, **overrides)  # unknown params fail before any work
    # a no-op on feedback_frame's output; makes any other frame split the same way
    frame = frame.sort_values(["event_time", "event_id"], kind="mergesort").reset_index(drop=True)
    n = len(frame)
    n_holdout = max(1, holdout_rows if holdout_rows is not None else round(n * holdout_fraction))
    start = 0
    if learn_since is not None:
        start = int(frame["event_time"].searchsorted(_like(frame["event_time"], learn_since)))
    n_train = n - n_holdout
    if n_train - start < min_train:
        raise InvalidEventError(
            f"window too small to retrain {spec_name!r}: {n} events leave "
            f"{max(n_train - start, 0)} to learn from (min_train={min_train}) after a "
            f"{n_holdout}-event holdout{' and the cut at ' + str(learn_since) if start else ''}; "
            "widen the window or lower min_train"
        )
    y = [coerce_label(task, v) for v in frame["label"].tolist()]
    rows = feature_rows(frame)
    learn_in_order(model, rows[start:n_train], y[start:n_train])
    _pin_idle_rngs(model)
    tail_rows, tail_y = rows[n_train:], y[n_train:]
    candidate, _ = _evaluate_model(task, model, tail_rows, tail_y)
    if champion is not None:
        champ, champ_n = _evaluate_model(task, champion, tail_rows, tail_y)
    elif "champion_version" in frame.columns:
        champ, champ_n = _evaluate_recorded(task, frame.iloc[n_train:], tail_y)
    else:
        champ, champ_n = {}, 0
    return RetrainResult(
        model=model, spec=spec.name, task=task, params={**spec.params, **overrides}, seed=seed,
        candidate_metrics=candidate, champion_metrics=champ, train_samples=n_train - start,
        holdout_samples=n_holdout, champion_samples=champ_n, train_rows=(start, n_train),
        holdout_rows=(n_train, n), window_start=_when(frame["event_time"].iloc[start]),
        holdout_start=_when(frame["event_time"].iloc[n_train]),
        window_end=_when(frame["event_time"].iloc[-1]), training_data=_spans(frame.iloc[start:]),
    )
