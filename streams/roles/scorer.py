"""The scorer: feature events in, predictions out, following the registry live.

Core (:class:`ScorerCore`, no Kafka): routes each event to the champion or, on a stable
hash split of its event_id, to a challenger; scores every shadow on all traffic; batches
each version's rows into one ``predict_proba_many`` call where the model has it; with
``explain_top_k`` > 0, a linear model's predictions carry their largest contributions
(:mod:`riverops.models.explain`, computed from the same encoded batch); binary scores feed
the estimates of performance before labels (:mod:`riverops.roles.estimates`).
Shell (:func:`run_scorer`): consumes features in batches, polls the registry topic
between batches (a swap never splits a batch, so no event is dropped or scored twice),
produces predictions and dead letters, and commits offsets only after delivery.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from riverops.kafka.topics import PREDICTIONS_HEADER
from riverops.modelops import model_loader
from riverops.models.batch import labels_and_scores, predict_batch
from riverops.models.explain import (
    Explanation,
    explainable,
    predict_explained,
    predict_proba_explained,
)
from riverops.models.registry import Registry
from riverops.roles.estimates import ScoreTap
from riverops.runtime import Context, Input, Outputs, RoleSpec, run
from riverops.schemas.errors import InvalidEventError, RiveropsError
from riverops.schemas.events import ModelVersion, Variant
from riverops.schemas.validation import validate_features
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = [
    "ServingModel", "ScorerCore", "ScoreResult", "ScorerStats", "bucket_of",
    "apply_registry", "ScorerRole", "run_scorer",
]

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
        # (model name, version, variant) -> indexes of the records it scores
        jobs: dict[tuple[str, int, str], tuple[ServingModel, list[int]]] = {}
        for index, record in enumerate(records):
            try:
                validate_features(record)
            except InvalidEventError as exc:
                result.invalid.append((index, exc))
                continue
            plan = self._plans.get(record["model"])
            if plan is None:
                result.invalid.append(
                    (index, InvalidEventError(f"unknown model {record['model']!r} (no champion)"))
                )
                continue
            served = plan.champion
            if plan.challengers:
                bucket = bucket_of(record["event_id"])
                for upper, challenger in plan.challengers:
                    if bucket < upper:
                        served = challenger
                        break
            for serving in (served, *plan.shadows):
                key = (record["model"], serving.version, serving.variant)
                jobs.setdefault(key, (serving, []))[1].append(index)

        outputs: list[_Output] = []
        failed: dict[int, InvalidEventError] = {}  # index -> why a model could not score it
        for serving, indexes in jobs.values():
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
            for index, label, score in zip(indexes, labels, scores, strict=True):
                if index in failed:  # an event leaves with all its predictions, or none
                    continue
                record = records[index]
                made.append((index,
                    {
                        "event_id": record["event_id"],
                        "model": record["model"],
                        "version": serving.version,
                        "variant": serving.variant,
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


ModelLoader = Callable[[ModelVersion], Any]


def _cached_loader(current: dict[tuple[int, str], Any], load: ModelLoader) -> ModelLoader:
    """Reuse a model object already serving the same version and artifact."""

    def loaded(record: ModelVersion) -> Any:
        cached = current.get((record.version, record.artifact.sha256))
        return cached if cached is not None else load(record)

    return loaded


def apply_registry(core: ScorerCore, registry: Registry, models: Sequence[str], load: ModelLoader,
                   on_refusal: Callable[[ModelVersion, Exception], None]) -> None:
    """Rebuild the plans of ``models`` from ``registry``; a version that fails to load is
    refused and the model keeps serving what it served before."""
    for name in models:
        plan = registry.plan(name)
        if plan.champion is None:
            if core.serving(name):
                log.warning("model %s has no champion any more; still serving the last plan", name)
            continue
        current = {(s.version, s.record.artifact.sha256): s.model for s in core.serving(name)}
        loaded = _cached_loader(current, load)

        try:
            champion = ServingModel(plan.champion, loaded(plan.champion), "champion")
        except Exception as exc:  # refusals must never stop the scorer
            on_refusal(plan.champion, exc)
            continue
        challengers, shadows = [], []
        for record in plan.challengers:
            try:
                challengers.append((ServingModel(record, loaded(record), "challenger"), record.share or 0.0))
            except Exception as exc:
                on_refusal(record, exc)
        for record in plan.shadows:
            try:
                shadows.append(ServingModel(record, loaded(record), "shadow"))
            except Exception as exc:
                on_refusal(record, exc)
        core.set_plan(name, champion=champion, challengers=challengers, shadows=shadows)
        log.info(
            "serving %s: champion v%s, challengers %s, shadows %s", name, champion.version,
            [c.version for c, _ in challengers], [s.version for s in shadows],
        )


def _run_headers(per_event: Counter[str]) -> Callable[[dict[str, Any]], list[tuple[str, bytes]]]:
    """The header telling how many predictions the event of a prediction has."""

    def headers(prediction: dict[str, Any]) -> list[tuple[str, bytes]]:
        return [(PREDICTIONS_HEADER, str(per_event[prediction["event_id"]]).encode())]

    return headers


@dataclass
class ScorerStats:
    """Counts of the scorer, for tests, the status view and logs."""

    batches: int = 0
    scored: int = 0
    predictions: int = 0
    dead_letters: int = 0
    refusals: int = 0
    swaps: int = 0
    assigned: bool = False  # the consumer group gave this worker its partitions


class ScorerRole(RoleSpec):
    """Features in, predictions out; the serving plans follow the registry between batches
    (a swap never splits a batch, so no event is dropped or scored twice)."""

    name = "scorer"
    inputs = ("features",)
    follows_registry = True
    poll_seconds = 0.1
    latency_stage = "scorer"

    def __init__(self, settings: Settings, *, stats: ScorerStats | None = None) -> None:
        self.stats: ScorerStats = stats or ScorerStats()
        self.core = ScorerCore(explain_top_k=settings.scorer.explain_top_k,
                               estimates=ScoreTap.from_settings(settings.scorer))
        self.consumer_config = {"fetch.wait.max.ms": settings.scorer.fetch_wait_ms}
        self._load = model_loader(settings)

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        self._serve(ctx.registry.models)

    def on_registry(self, updates: list[ModelVersion]) -> None:
        self._serve(sorted({u.model for u in updates}))
        self.stats.swaps += 1

    def _serve(self, models: Sequence[str]) -> None:
        apply_registry(self.core, self.ctx.registry, models, self._load, self._refuse)
        if self.ctx.telemetry is not None:
            for model, aliases in self.ctx.registry.aliases().items():
                for alias, versions in aliases.items():
                    if versions:
                        self.ctx.telemetry.set_alias(model, alias, versions[-1])

    def _refuse(self, record: ModelVersion, exc: Exception) -> None:
        self.stats.refusals += 1
        if self.ctx.telemetry is not None:
            self.ctx.telemetry.count_refusal(record.model, type(exc).__name__)
        log.error("refused %s v%s: %s: %s", record.model, record.version, type(exc).__name__, exc)

    def handle(self, batch: list[Input], out: Outputs) -> None:
        result = self.core.score([item.value for item in batch])
        for index, error in result.invalid:
            out.reject(batch[index].message, error)
        per_event = Counter(p["event_id"] for p in result.predictions)
        out.add("predictions", result.predictions, headers=_run_headers(per_event))
        self.stats.batches += 1
        self.stats.scored += len(batch) - len(result.invalid)
        self.stats.predictions += len(result.predictions)

    def tick(self, now: float, out: Outputs) -> None:
        if self.ctx.telemetry is not None:  # every estimate_seconds
            self.core.estimates.export(self.ctx.telemetry, now)


def run_scorer(settings: Settings, *, stop: threading.Event, group_id: str = "riverops-scorer",
               stats: ScorerStats | None = None, telemetry: Telemetry | None = None) -> ScorerStats:
    """Consume features, score, produce predictions until ``stop`` is set."""
    role = ScorerRole(settings, stats=stats)
    run(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    return role.stats
