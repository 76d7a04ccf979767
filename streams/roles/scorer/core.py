"""The scorer's core (no Kafka): serving plans, routing, batched predictions.

:class:`ScorerCore` routes each event to the champion or, on a stable hash split of its
event_id, to a challenger; scores every shadow on all traffic; batches each version's rows
into one ``predict_proba_many`` call where the model has it; with ``explain_top_k`` > 0, a
linear model's predictions carry their largest contributions
(:mod:`riverops.models.explain`, computed from the same encoded batch); binary scores feed
the estimates of performance before labels (:mod:`riverops.roles.estimates`).
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from riverops.models.batch import labels_and_scores, predict_batch
from riverops.models.explain import (
    Explanation,
    explainable,
    predict_explained,
    predict_proba_explained,
)
from riverops.roles.estimates import ScoreTap
from riverops.schemas.errors import InvalidEventError, RiveropsError
from riverops.schemas.events import ModelVersion, Variant
from riverops.schemas.validation import validate_features

__all__ = ["ServingModel", "ScorerCore", "ScoreResult", "bucket_of"]

log = logging.getLogger(__name__)


def bucket_of(event_id: str) -> float:
    """A stable position in [0, 1) for an event id (same on every worker and run).

    >>> bucket_of("e-1") == bucket_of("e-1")
    True
    """
    return zlib.crc32(event_id.encode()) / 4_294_967_296.0


@dataclass(frozen=True)
class ServingModel:
    """A loaded model version with the variant it serves as."""

    record: ModelVersion
    model: Any
    variant: Variant

    @property
    def version(self) -> int:
        return self.record.version


@dataclass
class ScoreResult:
    predictions: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[tuple[int, RiveropsError]] = field(default_factory=list)  # (index, why)


@dataclass
class _Plan:
    champion: ServingModel
    challengers: list[tuple[float, ServingModel]]  # (upper bound of the bucket range, model)
    shadows: list[ServingModel]


class ScorerCore:
    """Scores batches of decoded feature records with each model's serving plan; with
    ``explain_top_k`` > 0, the predictions of linear models carry their explanation."""

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter,
                 explain_top_k: int = 0, estimates: ScoreTap | None = None) -> None:
        if explain_top_k < 0:
            raise ValueError(f"explain_top_k must be >= 0, got {explain_top_k}")
        self._plans: dict[str, _Plan] = {}
        self._clock = clock
        self.explain_top_k = explain_top_k
        self._unexplained: set[tuple[str, int]] = set()  # versions said to have no explanation
        self.estimates = estimates or ScoreTap(size=0)  # binary scores, for estimates before labels

    def set_plan(
        self,
        model: str,
        *,
        champion: ServingModel,
        challengers: Sequence[tuple[ServingModel, float]] = (),
        shadows: Sequence[ServingModel] = (),
    ) -> None:
        """Serve ``model`` with these versions from the next batch on."""
        bounds, upper = [], 0.0
        for serving, share in challengers:
            upper += share
            bounds.append((upper, serving))
        if upper > 1.0:
            raise InvalidEventError(f"challenger shares of {model} add up to {upper:.2f} > 1")
        self._plans[model] = _Plan(champion, bounds, list(shadows))
        self.estimates.retain(s for m in self._plans for s in self.serving(m))

    def drop_plan(self, model: str) -> None:
        self._plans.pop(model, None)
        self.estimates.retain(s for m in self._plans for s in self.serving(m))

    def serving(self, model: str) -> list[ServingModel]:
        plan = self._plans.get(model)
        if plan is None:
            return []
        return [plan.champion, *(s for _, s in plan.challengers), *plan.shadows]

    def score(self, records: Sequence[dict[str, Any]]) -> ScoreResult:
        """Predictions for every valid record; the others come back with the reason, and so
        does a record a model cannot score (e.g. a string where it learned a number), with
        none of its predictions."""
        started = self._clock()
        result = ScoreResult()
        by_model: dict[str, list[int]] = {}  # model name -> indexes of its valid records
        for index, record in enumerate(records):
            try:
                validate_features(record)
            except InvalidEventError as exc:
                result.invalid.append((index, exc))
                continue
            by_model.setdefault(record["model"], []).append(index)
        jobs: list[tuple[ServingModel, list[int]]] = []  # a version and the records it scores
        for model, indexes in by_model.items():
            plan = self._plans.get(model)
            if plan is None:
                refusal = InvalidEventError(f"unknown model {model!r} (no champion)")
                result.invalid.extend((index, refusal) for index in indexes)
                continue
            jobs.extend(_route(plan, records, indexes))
            jobs.extend((shadow, indexes) for shadow in plan.shadows)
        result.invalid.sort(key=itemgetter(0))  # unknown models come after the loop

        outputs: list[_Output] = []
        failed: dict[int, InvalidEventError] = {}  # index -> why a model could not score it
        for serving, indexes in jobs:
            rows = [records[i]["features"] for i in indexes]
            top_k = self._top_k(serving)
            try:
                outputs.append((serving, indexes, *_predict(serving, rows, top_k)))
            except (TypeError, ValueError):
                # a row this model cannot take (a string where it learned a number) must not
                # stop the scorer: score row by row and refuse the event of each failing row
                outputs.append(_predict_each(serving, indexes, rows, failed, top_k))

        latency = self._clock() - started
        now = datetime.now(UTC)
        made: list[tuple[int, dict[str, Any]]] = []
        for serving, indexes, labels, scores, explanations in outputs:
            first = len(made)
            version, variant = serving.version, serving.variant
            for index, label, score in zip(indexes, labels, scores, strict=True):
                if failed and index in failed:  # an event leaves with all its predictions, or none
                    continue
                record = records[index]
                made.append((index,
                    {
                        "event_id": record["event_id"],
                        "model": record["model"],
                        "version": version,
                        "variant": variant,
                        "prediction": _avro_scalar(label),
                        "scores": score,
                        "latency": latency,
                        "event_time": record["event_time"],
                        "predicted_at": now,
                    }
                ))
            if explanations is not None:  # off: no per-event work (the field's default is null)
                _attach(made, first, indexes, explanations, failed)
            if serving.record.task == "binary":
                self.estimates.observe(serving, indexes, scores, failed)
        # the predictions of one event leave together, so a joiner reading them in
        # batches sees them as one run (see PREDICTIONS_HEADER)
        if len(outputs) > 1:  # one job lists its indexes in order already
            made.sort(key=itemgetter(0))
        result.predictions = [prediction for _, prediction in made]
        if failed:
            result.invalid = sorted([*result.invalid, *failed.items()], key=itemgetter(0))
        return result


    def _top_k(self, serving: ServingModel) -> int:
        """How many contributions to explain ``serving``'s predictions with (0: none)."""
        if not self.explain_top_k:
            return 0
        if explainable(serving.model):
            return self.explain_top_k
        key = (serving.record.model, serving.version)
        if key not in self._unexplained:
            self._unexplained.add(key)
            log.warning("explanations are on (explain_top_k=%d) but %s v%d (%s, %s) is not a "
                        "linear model: its predictions carry none", self.explain_top_k,
                        serving.record.model, serving.version, serving.record.spec,
                        type(serving.model).__name__)
        return 0


def _route(plan: _Plan, records: Sequence[dict[str, Any]], indexes: list[int]
           ) -> list[tuple[ServingModel, list[int]]]:
    """The champion's and each challenger's share of ``indexes`` (by :func:`bucket_of` of
    the event id); every version with at least one record."""
    if not plan.challengers:
        return [(plan.champion, indexes)]
    shares: dict[int, list[int]] = {}  # position in the plan (-1: the champion) -> indexes
    for index in indexes:
        bucket = bucket_of(records[index]["event_id"])
        chosen = next((i for i, (upper, _) in enumerate(plan.challengers) if bucket < upper), -1)
        shares.setdefault(chosen, []).append(index)
    return [(plan.champion if i < 0 else plan.challengers[i][1], share)
            for i, share in sorted(shares.items())]


# (serving, indexes of the records, predicted values, scores, explanations or None when off)
_Output = tuple[ServingModel, list[int], list[Any], list[dict[str, float]],
                list[Explanation | None] | None]


def _predict(serving: ServingModel, rows: list[dict[str, Any]], top_k: int = 0
             ) -> tuple[list[Any], list[dict[str, float]], list[Explanation | None] | None]:
    """The predicted values, the scores (``{}`` for a regressor) and, when ``top_k`` > 0,
    the explanations of a model's rows."""
    explanations: list[Explanation | None] | None = None
    if serving.record.task == "regression":
        if top_k:
            values, explanations = predict_explained(serving.model, rows, top_k=top_k)
        else:
            values = predict_batch(serving.model, rows)
        return values, [{} for _ in rows], explanations
    if not top_k:
        labels, scores = labels_and_scores(serving.model, rows)
        return labels, scores, None
    probas, explanations = predict_proba_explained(serving.model, rows, top_k=top_k)
    labels = [max(p, key=p.__getitem__) if p else None for p in probas]
    return labels, [{str(k): float(v) for k, v in p.items()} for p in probas], explanations


def _predict_each(serving: ServingModel, indexes: list[int], rows: list[dict[str, Any]],
                  failed: dict[int, InvalidEventError], top_k: int = 0) -> _Output:
    """:func:`_predict` one row at a time; the rows the model cannot score go to ``failed``."""
    kept, labels, scores, explanations = [], [], [], []
    for index, row in zip(indexes, rows, strict=True):
        try:
            (label,), (score,), explained = _predict(serving, [row], top_k)
        except (TypeError, ValueError) as exc:
            failed.setdefault(index, InvalidEventError(
                f"{serving.record.model} v{serving.version} cannot score the event: {exc}"))
            continue
        kept.append(index)
        labels.append(label)
        scores.append(score)
        explanations.append(explained[0] if explained is not None else None)
    return serving, kept, labels, scores, explanations if top_k else None


def _attach(made: list[tuple[int, dict[str, Any]]], first: int, indexes: list[int],
            explanations: list[Explanation | None], failed: dict[int, InvalidEventError]) -> None:
    """Put each explanation in its prediction: ``made[first:]`` holds one job's predictions,
    in the order of ``indexes`` less the ``failed`` ones."""
    position = first
    for index, explanation in zip(indexes, explanations, strict=True):
        if index in failed:
            continue
        made[position][1]["explanation"] = explanation
        position += 1


def _avro_scalar(value: Any) -> bool | float | str | None:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return str(value)
