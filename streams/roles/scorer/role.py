"""The scorer's shell: features in, predictions out, following the registry live.

:func:`run_scorer` consumes features in batches on the worker runtime, polls the registry
topic between batches (a swap never splits a batch, so no event is dropped or scored
twice: :func:`apply_registry` rebuilds the plans of :class:`~riverops.roles.scorer.core.ScorerCore`),
produces predictions and dead letters, and commits offsets only after delivery.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from riverops.kafka.topics import PREDICTIONS_HEADER
from riverops.modelops import model_loader
from riverops.models.registry import Registry
from riverops.roles.estimates import ScoreTap
from riverops.roles.scorer.core import ScorerCore, ServingModel
from riverops.runtime import Context, Input, Outputs, RoleSpec, run
from riverops.schemas.events import ModelVersion
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["apply_registry", "ScorerRole", "ScorerStats", "run_scorer"]

log = logging.getLogger(__name__)


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
    stateless = True
    poll_seconds = 0.1
    latency_stage = "scorer"

    def __init__(self, settings: Settings, *, stats: ScorerStats | None = None) -> None:
        self.stats: ScorerStats = stats or ScorerStats()
        self.core = ScorerCore(explain_top_k=settings.scorer.explain_top_k,
                               estimates=ScoreTap.from_settings(settings.scorer))
        self.consumer_config = {"fetch.wait.max.ms": settings.scorer.fetch_wait_ms}
        self.producer_config = {"linger.ms": settings.scorer.linger_ms}
        self.commit_seconds = settings.scorer.commit_ms / 1000
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
