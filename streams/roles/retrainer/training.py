"""Retraining: a fresh candidate learned from the head of the window, scored with the
champion on the same held-out tail, which the candidate never learned from.

No Kafka and no clock: the same frame (:mod:`~riverops.roles.retrainer.frame`), spec,
params and seed give the same model, byte for byte (:mod:`~riverops.roles.retrainer.seeding`),
hence the same artifact sha256.

Why :func:`riverops.models.batch.learn_in_order` (``learn_one`` per row), not ``learn_batch``:
``learn_many`` takes one mean-gradient step per mini-batch, so a fresh model barely leaves
its initial weights on a bounded window. Measured on Phishing (train on the first 1000
rows, score the last 250), ``logreg``: one by one, ROC AUC 0.968 and log loss 0.256; in
batches of 100 (10 steps), 0.953 and 0.660, every score within 0.46..0.55. The retrainer
is off the hot path, so it takes one step per event in event-time order: River's own
learning rule, deterministic.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from riverops.roles.retrainer.frame import feedback_frame
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> records = [{"event_id": f"e{i}", "event_time": t0 + timedelta(seconds=i),
...             "features": {"x": float(i % 7)}, "label": i % 7 > 3,
...             "label_time": t0, "predictions": []} for i in range(50)]
>>> result = retrain(feedback_frame(records, window_events=40), spec_name="logreg", seed=1,
...                  min_train=20)
>>> result.train_samples, result.holdout_samples, result.champion_metrics
(32, 8, {})
>>> sorted(result.metrics)
['accuracy', 'log_loss', 'roc_auc']
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from riverops.models.batch import learn_in_order
from riverops.models.labels import coerce_label
from riverops.models.specs import get_spec
from riverops.roles.retrainer.frame import feature_rows
from riverops.roles.retrainer.policy import PromotionPolicy
from riverops.roles.retrainer.scoring import evaluate_model, evaluate_recorded
from riverops.roles.retrainer.seeding import pin_idle_rngs
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import Task

__all__ = ["RetrainResult", "retrain", "best_candidate"]

log = logging.getLogger(__name__)


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
    warm_start: bool = False  # a copy of the champion learned the rows, not a fresh model
    passes: int = 1  # times the rows were learned
    gain_low: float | None = None  # bootstrap lower bound of the gain over the champion

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
    start_from: Any = None,
    passes: int = 1,
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
    compared on the same tail (the retrainer's answer to a drift alarm). ``start_from``
    warm-starts: a copy of that model (the champion's artifact) learns the rows instead of
    a fresh one (``params`` must then be empty); ``passes`` > 1 learns them that many
    times over, in order (a heavier weight on scarce post-alarm rows, for any River model).
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
    if passes < 1:
        raise ConfigError(f"passes must be at least 1, got {passes}")
    overrides = dict(params or {})
    if start_from is not None and overrides:
        raise ConfigError("a warm start keeps the champion's hyperparameters: no params")
    # unknown params fail before any work
    model = spec.build(seed=seed, **overrides) if start_from is None else copy.deepcopy(start_from)
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
    for _ in range(passes):
        learn_in_order(model, rows[start:n_train], y[start:n_train])
    pin_idle_rngs(model)
    tail_rows, tail_y = rows[n_train:], y[n_train:]
    candidate, _ = evaluate_model(task, model, tail_rows, tail_y)
    if champion is not None:
        champ, champ_n = evaluate_model(task, champion, tail_rows, tail_y)
    elif "champion_version" in frame.columns:
        champ, champ_n = evaluate_recorded(task, frame.iloc[n_train:], tail_y)
    else:
        champ, champ_n = {}, 0
    return RetrainResult(
        model=model, spec=spec.name, task=task, params={**spec.params, **overrides}, seed=seed,
        candidate_metrics=candidate, champion_metrics=champ, train_samples=n_train - start,
        holdout_samples=n_holdout, champion_samples=champ_n, train_rows=(start, n_train),
        holdout_rows=(n_train, n), window_start=_when(frame["event_time"].iloc[start]),
        holdout_start=_when(frame["event_time"].iloc[n_train]),
        window_end=_when(frame["event_time"].iloc[-1]), training_data=_spans(frame.iloc[start:]),
        warm_start=start_from is not None, passes=passes,
    )


def best_candidate(frame: pd.DataFrame, *, since_ms: float | None, policy: PromotionPolicy,
                   spec_name: str, seed: int | None, champion: Any,
                   holdout_fraction: float) -> RetrainResult:
    """The retrained candidate; after a drift alarm (``since_ms``: its time, epoch ms), the
    better by the policy's metric of one learned from the whole window and one from the
    feedback after the alarm, both scored (with the champion) on the same tail of
    post-alarm events.

    Which wins depends on the drift: when the concept reverses, the old rows teach the
    wrong answer and the post-alarm model wins; when a new pattern joins the old ones (new
    fraud does not make old fraud legitimate) the longer window usually does.
    """
    if since_ms is None:
        return retrain(frame, spec_name=spec_name, seed=seed, champion=champion,
                       holdout_fraction=holdout_fraction)
    cut = datetime.fromtimestamp(float(since_ms) / 1000.0, UTC)
    recent = len(frame) - int(frame["event_time"].searchsorted(_like(frame["event_time"], cut)))
    holdout = max(1, round(recent * holdout_fraction))
    results = [retrain(frame, spec_name=spec_name, seed=seed, champion=champion, holdout_rows=holdout)]
    try:
        results.append(retrain(frame, spec_name=spec_name, seed=seed, champion=champion,
                               holdout_rows=holdout, learn_since=cut))
    except InvalidEventError as exc:  # too few rows after the alarm: the whole window only
        log.info("no post-alarm candidate: %s", exc)
    return results[policy.best([r.candidate_metrics for r in results])]
