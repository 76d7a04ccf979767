"""Fast recovery after a drift alarm: a candidate from the first few hundred post-alarm
events, judged on the newest of them, with the evidence for promoting on a small holdout.

:func:`recovery_candidate` trains on the post-alarm rows only (the window before the alarm
holds the old concept), from a copy of the champion (``"warm"``: it keeps what still holds,
e.g. the daily cycle, and learns what changed) and/or from scratch (``"scratch"``), and
scores each with the champion on the newest ``holdout_fraction`` of the post-alarm rows,
which none of them learned. The better by the policy's metric goes on, with
:func:`gain_bound`: a paired bootstrap lower bound of its gain over the champion on that
tail. A few hundred holdout rows are fewer than the policy's ``min_samples``, so
:meth:`~riverops.roles.retrainer.policy.PromotionPolicy.decide` promotes on them only when
that bound clears the margin: a large gain (a champion that collapsed) is proved on few
rows, a small one is not, and a resample without both classes counts against the
candidate, so a tail with a handful of frauds proves little.

Examples
--------
>>> gain_bound([True, False, True, False] * 25, [0.9, 0.1, 0.8, 0.2] * 25,
...            [0.4, 0.6, 0.5, 0.5] * 25, metric="roc_auc", higher_is_better=True) > 0.5
True
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from riverops.models.batch import predict_batch, predict_proba_batch
from riverops.models.labels import coerce_label
from riverops.roles.retrainer.frame import feature_rows
from riverops.roles.retrainer.policy import Decision, PromotionPolicy
from riverops.roles.retrainer.scoring import binary_metrics, regression_metrics
from riverops.roles.retrainer.training import RetrainResult, _like, best_candidate, retrain
from riverops.roles.retrainer.triggers import RetrainerCore
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import Task

__all__ = ["Start", "STARTS", "gain_bound", "recovery_candidate", "level_before", "Judged",
           "judge"]

log = logging.getLogger(__name__)

Start = Literal["warm", "scratch"]
STARTS: tuple[Start, ...] = ("warm", "scratch")


def _p(proba: dict[Any, float]) -> float:
    if True in proba:
        return float(proba[True])
    return 1.0 - float(proba[False]) if False in proba else float("nan")


def _answers(task: Task, model: Any, rows: list[dict[str, Any]]) -> list[float]:
    if task == "binary":
        return [_p(p) for p in predict_proba_batch(model, rows)]
    return [float("nan") if v is None else float(v) for v in predict_batch(model, rows)]


def gain_bound(y: Sequence[Any], candidate: Sequence[float], champion: Sequence[float], *,
               metric: str, higher_is_better: bool, confidence: float = 0.95, rounds: int = 200,
               seed: int = 0, task: Task = "binary") -> float:
    """The ``1 - confidence`` quantile of the candidate's gain over the champion on ``y``
    (P(True) per row for a binary task, the predicted value for regression), over ``rounds``
    paired bootstrap resamples of the rows (seeded: the same rows give the same bound). A
    resample where either model has no value of ``metric`` (ROC AUC on one class) counts
    as a loss of the candidate (gain -inf)."""
    if not 0.5 <= confidence < 1:
        raise ConfigError(f"confidence must be in [0.5, 1), got {confidence}")
    ys = np.asarray(y)
    cand, champ = np.asarray(candidate, dtype=np.float64), np.asarray(champion, dtype=np.float64)
    n = len(ys)
    if n == 0:
        return float("-inf")
    score = binary_metrics if task == "binary" else regression_metrics
    rng = np.random.default_rng(seed)
    gains = np.empty(rounds)
    for r in range(rounds):
        i = rng.integers(0, n, n)
        new, old = score(ys[i].tolist(), cand[i].tolist()), score(ys[i].tolist(), champ[i].tolist())
        if metric not in new or metric not in old:
            gains[r] = float("-inf")
        else:
            gains[r] = new[metric] - old[metric] if higher_is_better else old[metric] - new[metric]
    return float(np.quantile(gains, 1 - confidence, method="lower"))


def recovery_candidate(
    frame: pd.DataFrame, *, since_ms: float, policy: PromotionPolicy, spec_name: str,
    seed: int | None, champion: Any, holdout_fraction: float,
    starts: Sequence[Start] = STARTS, passes: int = 1, confidence: float = 0.95,
) -> RetrainResult:
    """The best of the ``starts`` candidates learned from the post-alarm rows of ``frame``
    (``since_ms``: the alarm's time, epoch ms), scored with the ``champion`` model on the
    newest ``holdout_fraction`` of them, with its :func:`gain_bound` (see the module
    docstring). Raises InvalidEventError when the post-alarm rows are too few to learn
    from, ConfigError on an unknown start or without a champion model."""
    if champion is None:
        raise ConfigError("a recovery retrain compares with the champion's model: none given")
    if not starts or any(s not in STARTS for s in starts):
        raise ConfigError(f"starts must be some of {STARTS}, got {tuple(starts)}")
    frame = frame.sort_values(["event_time", "event_id"], kind="mergesort").reset_index(drop=True)
    cut = datetime.fromtimestamp(float(since_ms) / 1000.0, UTC)
    recent = len(frame) - int(frame["event_time"].searchsorted(_like(frame["event_time"], cut)))
    holdout = max(1, round(recent * holdout_fraction))
    results = [retrain(frame, spec_name=spec_name, seed=seed, champion=champion, holdout_rows=holdout,
                       learn_since=cut, passes=passes,
                       start_from=champion if start == "warm" else None)
               for start in starts]
    best = results[policy.best([r.candidate_metrics for r in results])]
    if not best.champion_metrics:
        raise InvalidEventError("the champion answered none of the post-alarm holdout")
    tail = frame.iloc[best.holdout_rows[0]:]
    task = best.task
    y = [coerce_label(task, v) for v in tail["label"].tolist()]
    rows = feature_rows(tail)
    low = gain_bound(y, _answers(task, best.model, rows), _answers(task, champion, rows),
                     metric=policy.metric, higher_is_better=policy.higher_is_better,
                     confidence=confidence, seed=seed or 0, task=task)
    return dataclasses.replace(best, gain_low=low)


@dataclass(frozen=True)
class Judged:
    """A request's candidate and the policy's decision on it. ``stage``: the post-alarm
    events of a fast recovery run (None: a settled run); ``retry``: the post-alarm events
    the request was put back to wait for (after any fast run: the settled run follows a
    fast promotion). A fast run's candidate is registered only when it is promoted."""

    result: RetrainResult | None
    decision: Decision
    stage: int | None = None
    retry: int | None = None

    @property
    def register(self) -> bool:
        """Whether the candidate goes to the registry (with the decision applied)."""
        return self.result is not None and (self.stage is None or self.decision.action == "promote")

    @property
    def learned(self) -> str:
        """What the candidate learned, for the registry's reason."""
        result = self.result
        if result is None:
            return "nothing"
        if result.train_rows[0] or result.warm_start:
            start = ", from a copy of the champion" if result.warm_start else ", from scratch"
            times = f", {result.passes} times" if result.passes > 1 else ""
            return f"the {result.train_samples} events after the alarm{start}{times}"
        return f"the last {result.train_samples} events"


def level_before(frame: pd.DataFrame, since_ms: float, champion: Any, metric: str, *,
                 task: Task = "binary") -> float | None:
    """The champion model's ``metric`` on the rows of ``frame`` before ``since_ms`` (the
    level a fast recovery must come back to); None when there are none or it has no value."""
    frame = frame.sort_values(["event_time", "event_id"], kind="mergesort").reset_index(drop=True)
    cut = datetime.fromtimestamp(since_ms / 1000.0, UTC)
    head = frame.iloc[:int(frame["event_time"].searchsorted(_like(frame["event_time"], cut)))]
    if head.empty:
        return None
    y = [coerce_label(task, v) for v in head["label"].tolist()]
    answers = _answers(task, champion, feature_rows(head))
    values = binary_metrics(y, answers) if task == "binary" else regression_metrics(y, answers)
    return values.get(metric)


def _back(decision: Decision, policy: PromotionPolicy, result: RetrainResult, frame: pd.DataFrame,
          since_ms: float, champion: Any, tolerance: float) -> Decision:
    """``decision`` (a promotion) unless the candidate is further than ``tolerance`` from the
    champion's level before the alarm: beating a collapsed champion is not recovering, and
    a weak champion promoted now would hold the next retrain back (its alarms start from
    its own level)."""
    metric = policy.metric
    level, value = level_before(frame, since_ms, champion, metric, task=result.task), result.candidate_metrics.get(metric)
    if level is None or value is None:
        return decision
    allowed = tolerance * abs(level) if policy.margin_kind == "relative" else tolerance
    gain = value - level if policy.higher_is_better else level - value
    if gain >= -allowed:
        return Decision("promote", f"{decision.reason}; back within {allowed:.6g} of the champion's "
                        f"{metric} {level:.6g} before the alarm")
    return Decision("reject", f"{decision.reason}; but not back within {allowed:.6g} of the "
                    f"champion's {metric} {level:.6g} before the alarm")


def _starts(choice: str) -> tuple[Start, ...]:
    return STARTS if choice == "both" else (("warm",) if choice == "warm" else ("scratch",))


def judge(core: RetrainerCore, request: Mapping[str, Any], frame: pd.DataFrame, *,
          spec_name: str, champion: Any) -> Judged:
    """Train for ``request`` (returned by ``core.ready``) on its ``frame`` and decide: a fast
    recovery run (:meth:`~riverops.roles.retrainer.triggers.RetrainerCore.recovery_stage`)
    uses :func:`recovery_candidate` and, unless it promotes, is put back for more
    post-alarm feedback; any other run is :func:`~riverops.roles.retrainer.training.best_candidate`.
    Pure: the role and the offline harness (``bench/recovery.py``) share it."""
    settings, policy = core.settings, core.policy
    since = request["params"].get("since_ms")
    stage = core.recovery_stage(request)
    if stage is not None and since is not None:
        result: RetrainResult | None
        try:
            result = recovery_candidate(
                frame, since_ms=float(since), policy=policy, spec_name=spec_name,
                seed=settings.seed, champion=champion,
                holdout_fraction=settings.recovery_holdout_fraction,
                starts=_starts(settings.recovery_start), passes=settings.recovery_passes,
                confidence=settings.recovery_confidence)
            decision = policy.decide(result.candidate_metrics, result.champion_metrics,
                                     result.holdout_samples, gain_low=result.gain_low)
            if decision.action == "promote":
                decision = _back(decision, policy, result, frame, float(since), champion,
                                 settings.recovery_tolerance)
        except InvalidEventError as exc:
            result, decision = None, Decision("reject", f"no fast recovery candidate: {exc}")
        promoted = decision.action == "promote"
        return Judged(result, decision, stage, core.again(request, settle=promoted))
    result = best_candidate(frame, since_ms=float(since) if since is not None else None,
                            policy=policy, spec_name=spec_name, seed=settings.seed,
                            champion=champion, holdout_fraction=settings.holdout_fraction)
    return Judged(result, policy.decide(result.candidate_metrics, result.champion_metrics,
                                        result.holdout_samples))
