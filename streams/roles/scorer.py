"""The scorer: feature events in, predictions out, following the registry live.

Core (:class:`ScorerCore`, no Kafka): routes each event to the champion or, on a stable
hash split of its event_id, to a challenger; scores every shadow on all traffic; batches
each version's rows into one ``predict_proba_many`` call where the model has it.
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

from riverops.kafka.clients import commit, consume_batch, make_consumer, next_offsets, ok
from riverops.kafka.deadletter import dead_letter
from riverops.kafka.limits import check_record
from riverops.kafka.outbox import Outbox
from riverops.kafka.registry_topic import RegistryFollower
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue
from riverops.models.batch import predict_batch, predict_proba_batch
from riverops.models.registry import Registry
from riverops.schemas.errors import DecodeError, InvalidEventError, RiveropsError
from riverops.schemas.events import ModelVersion, Variant
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = [
    "ServingModel", "ScorerCore", "ScoreResult", "ScorerStats", "bucket_of", "validate_features",
    "apply_registry", "run_scorer",
]

log = logging.getLogger(__name__)

MAX_FEATURES = 10_000
MAX_STRING = 4_096
FETCH_WAIT_MS = 10
"""The scorer consumer's ``fetch.wait.max.ms`` (librdkafka's default is 500). Kafka answers a
fetch as soon as data arrives, but the embedded broker (Tansu 0.6.0) holds it to the full
wait: p50 137 ms for one produce -> consume hop at 5k events/s, 13 ms with 10 ms
(bench/results). On Kafka the cost is at most 100 empty fetches/s per broker when idle."""


def bucket_of(event_id: str) -> float:
    """A stable position in [0, 1) for an event id (same on every worker and run).

    >>> bucket_of("e-1") == bucket_of("e-1")
    True
    """
    return zlib.crc32(event_id.encode()) / 4_294_967_296.0


def validate_features(record: dict[str, Any]) -> None:
    """Raise InvalidEventError for what the Avro schema alone lets through."""
    if not record["event_id"]:
        raise InvalidEventError("empty event_id")
    if not record["model"]:
        raise InvalidEventError("empty model name")
    features = record["features"]
    if len(features) > MAX_FEATURES:
        raise InvalidEventError(f"{len(features)} features, more than {MAX_FEATURES}")
    # fast path, one C-level pass: a NaN or an infinity makes the sum non-finite, so a finite
    # sum of numbers clears every value; strings and None raise TypeError and take the
    # loop below, and so does a sum that overflowed (the loop then finds nothing)
    try:
        if math.isfinite(sum(features.values())):
            return
    except (TypeError, OverflowError):
        pass
    for name, value in features.items():
        if type(value) is float and not math.isfinite(value):
            raise InvalidEventError(f"feature {name!r} is {value}, not a finite number")
        if type(value) is str and len(value) > MAX_STRING:
            raise InvalidEventError(f"feature {name!r} is a string of {len(value)} chars")


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
    """Scores batches of decoded feature records with each model's serving plan."""

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._plans: dict[str, _Plan] = {}
        self._clock = clock

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

    def drop_plan(self, model: str) -> None:
        self._plans.pop(model, None)

    def serving(self, model: str) -> list[ServingModel]:
        plan = self._plans.get(model)
        if plan is None:
            return []
        return [plan.champion, *(s for _, s in plan.challengers), *plan.shadows]

    def score(self, records: Sequence[dict[str, Any]]) -> ScoreResult:
        """Predictions for every valid record; the others come back with the reason."""
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

        outputs: list[tuple[ServingModel, list[int], list[Any], list[dict[str, float]]]] = []
        for serving, indexes in jobs.values():
            rows = [records[i]["features"] for i in indexes]
            if serving.record.task == "regression":
                values = predict_batch(serving.model, rows)
                outputs.append((serving, indexes, values, [{} for _ in rows]))
            else:
                probas = predict_proba_batch(serving.model, rows)
                labels = [max(p, key=p.__getitem__) if p else None for p in probas]
                scores = [{str(k): float(v) for k, v in p.items()} for p in probas]
                outputs.append((serving, indexes, labels, scores))

        latency = self._clock() - started
        now = datetime.now(UTC)
        made: list[tuple[int, dict[str, Any]]] = []
        for serving, indexes, labels, scores in outputs:
            for index, label, score in zip(indexes, labels, scores, strict=True):
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
        # the predictions of one event leave together, so a joiner reading them in
        # batches sees them as one run (see PREDICTIONS_HEADER)
        if len(outputs) > 1:  # one job lists its indexes in order already
            made.sort(key=itemgetter(0))
        result.predictions = [prediction for _, prediction in made]
        return result


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
    """Counts of the scorer shell, for tests, the status view and logs."""

    batches: int = 0
    scored: int = 0
    predictions: int = 0
    dead_letters: int = 0
    refusals: int = 0
    swaps: int = 0
    assigned: bool = False  # the consumer group gave this worker its partitions


def run_scorer(
    settings: Settings,
    *,
    stop: threading.Event,
    group_id: str = "riverops-scorer",
    stats: ScorerStats | None = None,
    on_batch: Callable[[ScorerStats], None] | None = None,
    telemetry: Telemetry | None = None,
) -> ScorerStats:
    """Consume features, score, produce predictions until ``stop`` is set."""
    from riverops.modelops import model_loader

    stats = stats or ScorerStats()
    load = model_loader(settings)
    codec = settings.codec()
    catalogue = TopicCatalogue.from_settings(settings)
    features, predictions, deadletters = (
        catalogue.name("features"), catalogue.name("predictions"), catalogue.name("deadletter")
    )

    def refuse(record: ModelVersion, exc: Exception) -> None:
        stats.refusals += 1
        if telemetry is not None:
            telemetry.count_refusal(record.model, type(exc).__name__)
        log.error("refused %s v%s: %s: %s", record.model, record.version, type(exc).__name__, exc)

    registry = Registry()
    follower = RegistryFollower(settings, codec=codec)
    follower.read_to_end(registry)
    core = ScorerCore()
    apply_registry(core, registry, registry.models, load, refuse)

    consumer = make_consumer(settings, group_id, **{"fetch.wait.max.ms": FETCH_WAIT_MS})
    def on_assign(_consumer: Any, partitions: list[Any]) -> None:
        stats.assigned = True
        log.info("scorer assigned %s", [f"{p.topic}[{p.partition}]" for p in partitions])

    consumer.subscribe([features], on_assign=on_assign)
    outbox = Outbox(settings, codec=codec)

    try:
        while not stop.is_set():
            updates = follower.poll(timeout=0)
            if updates:
                registry.apply_all(updates)
                changed = sorted({u.model for u in updates})
                apply_registry(core, registry, changed, load, refuse)
                stats.swaps += 1
            messages = [m for m in consume_batch(consumer, settings.batch_size, 0.1) if ok(m)]
            if telemetry is not None and (updates or stats.batches == 0):
                for model, aliases in registry.aliases().items():
                    for alias, versions in aliases.items():
                        if versions:
                            telemetry.set_alias(model, alias, versions[-1])
            if not messages:
                continue
            started = time.perf_counter()
            decoded = codec.decode_many("FeatureEvent", [m.value() for m in messages])
            records, sources, dead = [], [], []
            for message, item in zip(messages, decoded, strict=True):
                if isinstance(item, DecodeError):
                    dead.append(dead_letter(message, item, processor="scorer"))
                elif (too_big := check_record(message.key(), message.value())) is not None:
                    dead.append(dead_letter(message, too_big, processor="scorer"))
                else:
                    records.append(item)
                    sources.append(message)
            result = core.score(records)
            dead += [dead_letter(sources[i], error, processor="scorer") for i, error in result.invalid]
            per_event = Counter(p["event_id"] for p in result.predictions)
            outbox.send(
                predictions, "PredictionEvent", result.predictions, key="event_id", time_field="event_time",
                headers=_run_headers(per_event),
            )
            outbox.send(deadletters, "DeadLetter", dead, key="key")
            outbox.flush("predictions")
            commit(consumer, next_offsets(messages))  # a group that moved on re-reads them
            stats.batches += 1
            stats.scored += len(records) - len(result.invalid)
            stats.predictions += len(result.predictions)
            stats.dead_letters += len(dead)
            if telemetry is not None:
                telemetry.count_in(features, len(messages))
                telemetry.count_out(predictions, len(result.predictions))
                for letter in dead:
                    telemetry.count_dead_letter(features, letter["error_type"])
                telemetry.observe_latency("scorer", time.perf_counter() - started)
            if on_batch is not None:
                on_batch(stats)
    finally:
        outbox.close()
        consumer.close()
        follower.close()
    return stats
