"""The retrainer's Kafka shell: triggers, retraining on recent feedback, promotion, rollback.

Triggers become RetrainRequest records on the retrain topic (so a manual request and an
automatic one travel the same way): a rising concept-drift alarm, the champion's rolling
metric under ``degradation_below``, a schedule. Each request retrains the model's spec on
the most recent ``window_events`` feedback events (kept from the feedback topic), scores
the candidate and the champion's frozen artifact on the same held-out tail, registers the
candidate with its metrics and lineage, and applies the promotion policy. The worker also
watches the live metric of every champion it sees and rolls back a champion that falls
more than the policy's ``rollback_drop`` under its baseline.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from models.registry import Registry
from schemas.errors import DecodeError, InvalidEventError, RiveropsError
from schemas.events import ModelVersion, OffsetRange, RetrainRequest
from streams.clients import make_consumer, make_producer, next_offsets, ok
from streams.modelops import model_loader, register_trained
from streams.policy import Decision, PromotionPolicy, apply
from streams.registry_topic import RegistryFollower, publish_records
from streams.retrainer import feedback_frame, retrain
from streams.settings import Settings
from streams.telemetry import Telemetry
from streams.topics import TopicCatalogue

__all__ = ["RetrainerStats", "run_retrainer", "request_retrain"]

log = logging.getLogger(__name__)

Source = tuple[str, int, int]


@dataclass
class RetrainerStats:
    requests: int = 0
    retrains: int = 0
    failed: int = 0
    decisions: list[str] = field(default_factory=list)
    rollbacks: int = 0
    assigned: bool = False


def request_retrain(settings: Settings, model: str, *, reason: str, by: str,
                    params: dict[str, Any] | None = None) -> RetrainRequest:
    """Publish a RetrainRequest (what ``riverops retrain`` and the triggers do)."""
    request = RetrainRequest(request_id=uuid.uuid4().hex, model=model, reason=reason,
                             requested_by=by, requested_at=datetime.now(UTC), params=params or {})
    producer = make_producer(settings, **{"linger.ms": 0})
    producer.produce(TopicCatalogue.from_settings(settings).name("retrain"), key=model,
                     value=settings.codec().encode("RetrainRequest", request.to_avro()))
    if producer.flush(15):
        raise RiveropsError("the retrain request was not delivered")
    return request


def run_retrainer(
    settings: Settings,
    *,
    stop: threading.Event,
    group_id: str = "riverops-retrainer",
    telemetry: Telemetry | None = None,
    stats: RetrainerStats | None = None,
    policy: PromotionPolicy | None = None,
    window_events: int = 5_000,
    holdout_fraction: float = 0.2,
    cooldown_seconds: float = 20.0,
    degradation_below: float | None = None,
    schedule_seconds: float | None = None,
    seed: int = 42,
    min_error_rise: float = 0.02,
) -> RetrainerStats:
    """Retrain on demand until ``stop`` is set."""
    stats = stats or RetrainerStats()
    policy = policy or PromotionPolicy()
    codec = settings.codec()
    catalogue = TopicCatalogue.from_settings(settings)
    topics = {catalogue.name(r): r for r in ("feedback", "drift", "metrics", "retrain")}
    load = model_loader(settings)
    registry = Registry()
    follower = RegistryFollower(settings, codec=codec)
    follower.read_to_end(registry)
    windows: dict[str, deque[tuple[dict[str, Any], Source]]] = defaultdict(
        lambda: deque(maxlen=window_events)
    )
    last_request: dict[str, float] = {}
    baselines: dict[tuple[str, int], float] = {}  # (model, champion version) -> baseline
    live: dict[tuple[str, int], tuple[float, int]] = {}  # latest (metric, samples) of champions
    consumer = make_consumer(settings, group_id)
    consumer.subscribe(list(topics), on_assign=lambda *_: setattr(stats, "assigned", True))
    feedback_topic = catalogue.name("feedback")
    waiting: list[tuple[float, dict[str, Any]]] = []  # (received at, request)

    def feedback_caught_up() -> bool:
        """The window holds the feedback that was out when the request was made."""
        assigned = [tp for tp in consumer.assignment() if tp.topic == feedback_topic]
        try:
            positions = consumer.position(assigned)
            highs = [consumer.get_watermark_offsets(tp, cached=True)[1] for tp in assigned]
        except KafkaException:
            return False
        return all(h >= 0 and p.offset >= h - 10 for p, h in zip(positions, highs, strict=True))
    last_schedule = time.monotonic()

    def publish(records: list[ModelVersion]) -> None:
        publish_records(settings, records)
        registry.apply_all(records)

    def trigger(model: str, reason: str, by: str, params: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last_request.get(model, -1e9) < cooldown_seconds:
            return
        last_request[model] = now
        request_retrain(settings, model, reason=reason, by=by, params=params)
        log.info("retrain of %s requested: %s %s", model, reason, params)

    def execute(request: dict[str, Any]) -> None:
        model = request["model"]
        stats.requests += 1
        champion = registry.champion(model)
        if champion is None:
            raise InvalidEventError(f"no champion for {model}: nothing to retrain from")
        window = list(windows[model])
        size = int(request["params"].get("window_events") or window_events)
        window = window[-size:]
        frame = feedback_frame([r for r, _ in window], sources=[s for _, s in window])
        result = retrain(frame, spec_name=champion.spec, seed=seed, champion=load(champion),
                         holdout_fraction=holdout_fraction)
        why = f"retrain ({request['reason']} by {request['requested_by']})"
        added = register_trained(
            settings, registry, model, result.model, spec_name=result.spec, stage="candidate",
            by="retrainer", reason=why, seed=seed, metrics=result.metrics, samples=result.samples,
            training_data=[OffsetRange(**d) for d in result.training_data], parent=champion.version,
        )
        publish(added)
        decision: Decision = policy.decide(result.candidate_metrics, result.champion_metrics,
                                           result.holdout_samples)
        version = added[-1].version
        publish(apply(decision, registry, model, version, by="retrainer", reason=why))
        stats.retrains += 1
        stats.decisions.append(f"{model} v{version}: {decision.action} ({decision.reason})")
        log.info("%s v%s: %s (%s)", model, version, decision.action, decision.reason)

    def watch(event: dict[str, Any]) -> None:
        """Degradation trigger and automatic rollback from the champion's rolling metric."""
        model, version = event["model"], event["version"]
        if (event["variant"] != "champion" or event["window_kind"] != "count"
                or policy.metric not in event["metrics"]):
            return
        value, samples = event["metrics"][policy.metric], event["samples"]
        live[(model, version)] = (value, samples)  # every champion's level, for baselines
        champion = registry.champion(model)
        if champion is None or champion.version != version:
            return
        if (model, version) not in baselines:
            base = policy.baseline(champion)
            previous = registry.previous_champion(model)
            if base is None and previous is not None and (model, previous.version) in live:
                base = live[(model, previous.version)][0]
            if base is not None:
                baselines[(model, version)] = base
        base = baselines.get((model, version))
        if base is not None and registry.previous_champion(model) is not None:
            rollback = policy.check_rollback(live_metric=value, baseline_metric=base, samples=samples)
            if rollback is not None:
                publish(apply(rollback, registry, model, version, by="retrainer", reason="live check"))
                stats.rollbacks += 1
                stats.decisions.append(f"{model} v{version}: rollback ({rollback.reason})")
                log.warning("rolled back %s v%s: %s", model, version, rollback.reason)
                return
        if degradation_below is not None and value < degradation_below and samples >= policy.min_samples:
            trigger(model, "degradation", "retrainer", {"metric": policy.metric, "value": value})

    try:
        while not stop.is_set():
            registry.apply_all(follower.poll(timeout=0))
            messages = [m for m in consumer.consume(settings.batch_size, 0.2) if ok(m)]
            for message in messages:
                role = topics[message.topic() or ""]
                schema = {"feedback": "FeedbackEvent", "drift": "DriftEvent",
                          "metrics": "MetricsEvent", "retrain": "RetrainRequest"}[role]
                try:
                    record = codec.decode(schema, message.value())
                except DecodeError as exc:
                    log.error("undecodable %s record at offset %s: %s", role, message.offset(), exc)
                    continue
                if role == "feedback":
                    source = (message.topic() or "", message.partition() or 0, message.offset() or 0)
                    windows[record["model"]].append((record, source))
                elif role == "drift":
                    # act on a concept alarm of the champion whose error rose by enough to
                    # matter (the statistic is the error after the change, the threshold
                    # the error before it): bursts of fraud move ADWIN without a new concept
                    rise = record["statistic"] - (record["threshold"] or 0.0)
                    if (record["kind"] == "concept" and record["variant"] == "champion"
                            and rise >= min_error_rise):
                        trigger(record["model"], "drift", "monitor",
                                {"detector": record["detector"], "error_after": record["statistic"]})
                elif role == "metrics":
                    watch(record)
                else:
                    waiting.append((time.monotonic(), record))
            # a request waits (10 s at most) until the feedback window has caught up, so a
            # retrain after a drift alarm sees the feedback that raised it
            while waiting and (feedback_caught_up() or time.monotonic() - waiting[0][0] > 10):
                _, request = waiting.pop(0)
                try:
                    execute(request)
                except (RiveropsError, ValueError) as exc:
                    stats.failed += 1
                    log.error("retrain of %s failed: %s", request["model"], exc)
            if schedule_seconds and time.monotonic() - last_schedule >= schedule_seconds:
                last_schedule = time.monotonic()
                for model in registry.models:
                    trigger(model, "schedule", "schedule", {})
            if messages:
                consumer.commit(offsets=next_offsets(messages), asynchronous=False)
    finally:
        consumer.close()
        follower.close()
    return stats
