"""The retrainer's Kafka shell: triggers, retraining on recent feedback, promotion, rollback.

Triggers become RetrainRequest records on the retrain topic (so a manual request and an
automatic one travel the same way): a rising concept-drift alarm, the champion's rolling
metric under ``degradation_below``, a schedule. Each request retrains the model's spec on
the most recent ``window_events`` feedback events (and, with ``window_seconds``, only those
of the last seconds of event time), kept from the feedback topic, scores
the candidate and the champion's frozen artifact on the same held-out tail, registers the
candidate with its metrics and lineage, and applies the promotion policy. The worker also
watches the live metric of every new champion (:class:`riverops.roles.policy.Probation`) and rolls
it back when it stays under the level of the champion it replaced.

The window lives in memory. On partition assignment (a start, a restart, a rebalance)
the worker seeks each feedback partition ``window_events`` records before its committed
offset, so the window is replayed from the topic rather than starting empty: feedback only
fills windows, so reading it twice has no other effect.

A drift-triggered request trains on the feedback that followed the alarm: the window
before it holds the old concept, so a model learned from it would be the old model again.
The request carries the alarm's time (``since_ms``: the label time of the outcome that
raised it) and waits, ``drift_wait_seconds`` at most, until ``drift_min_samples`` feedback
events that happened after it are in the window; on timeout it trains on the whole window.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverops.kafka.clients import (
    commit,
    make_consumer,
    make_producer,
    next_offsets,
    ok,
    raise_if_refused,
)
from riverops.kafka.registry_topic import RegistryFollower, choosing_version, publish_records
from riverops.kafka.topics import TopicCatalogue
from riverops.modelops import model_loader, register_trained
from riverops.models.registry import Registry
from riverops.roles.policy import Decision, Probation, PromotionPolicy, apply
from riverops.roles.retrainer import RetrainResult, feedback_frame, retrain
from riverops.schemas.errors import DecodeError, InvalidEventError, RiveropsError
from riverops.schemas.events import ModelVersion, OffsetRange, RetrainRequest
from riverops.settings import Settings
from riverops.telemetry import Telemetry

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


def _millis(value: datetime) -> float:
    return value.timestamp() * 1000.0


def _after_alarm(window: Iterable[tuple[dict[str, Any], Source]],
                 params: dict[str, Any]) -> list[tuple[dict[str, Any], Source]]:
    """The window's feedback for events at or after a drift alarm's event time (all of it
    when the request does not come from an alarm)."""
    since = params.get("since_ms")
    if since is None:
        return list(window)
    return [(r, s) for r, s in window if _millis(r["event_time"]) >= since]


def _best_candidate(frame: pd.DataFrame, params: dict[str, Any], policy: PromotionPolicy, *,
                    spec_name: str, seed: int, champion: Any,
                    holdout_fraction: float) -> RetrainResult:
    """The retrained candidate; after a drift alarm, the better by the policy's metric of
    one learned from the whole window and one from the feedback after the alarm, both
    scored (with the champion) on the same tail of post-alarm events.

    Which wins depends on the drift: when the concept reverses, the old rows teach the
    wrong answer and the post-alarm model wins; when a new pattern joins the old ones (new
    fraud does not make old fraud legitimate) the longer window usually does.
    """
    since = params.get("since_ms")
    if since is None:
        return retrain(frame, spec_name=spec_name, seed=seed, champion=champion,
                       holdout_fraction=holdout_fraction)
    cut = datetime.fromtimestamp(float(since) / 1000.0, UTC)
    recent = len(frame) - int(frame["event_time"].searchsorted(pd.Timestamp(cut)))
    holdout = max(1, round(recent * holdout_fraction))
    results = [retrain(frame, spec_name=spec_name, seed=seed, champion=champion, holdout_rows=holdout)]
    try:
        results.append(retrain(frame, spec_name=spec_name, seed=seed, champion=champion,
                               holdout_rows=holdout, learn_since=cut))
    except InvalidEventError as exc:  # too few rows after the alarm: the whole window only
        log.info("no post-alarm candidate: %s", exc)
    return results[policy.best([r.candidate_metrics for r in results])]


def request_retrain(settings: Settings, model: str, *, reason: str, by: str,
                    params: dict[str, Any] | None = None) -> RetrainRequest:
    """Publish a RetrainRequest (what ``riverops retrain`` and the triggers do)."""
    request = RetrainRequest(request_id=uuid.uuid4().hex, model=model, reason=reason,
                             requested_by=by, requested_at=datetime.now(UTC), params=params or {})
    producer = make_producer(settings, **{"linger.ms": 0})
    topic = TopicCatalogue.from_settings(settings).name("retrain")
    errors: list[KafkaError] = []
    producer.produce(topic, key=model, value=settings.codec().encode("RetrainRequest", request.to_avro()),
                     on_delivery=lambda error, _message: errors.append(error) if error else None)
    remaining = producer.flush(15)
    for error in errors:
        raise_if_refused(error, f"writing {topic}")
    if remaining or errors:
        raise RiveropsError(f"the retrain request was not delivered: {[str(e) for e in errors]}")
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
    drift_min_samples: int = 1_500,
    drift_wait_seconds: float = 60.0,
    window_seconds: float | None = None,
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
    probation: dict[tuple[str, int], Probation] = {}  # new champions under watch
    live: dict[tuple[str, int], tuple[float, int]] = {}  # latest (metric, samples) of champions
    consumer = make_consumer(settings, group_id)
    feedback_topic = catalogue.name("feedback")

    def on_assign(_consumer: Any, partitions: list[TopicPartition]) -> None:
        """Replay the last ``window_events`` feedback records of each partition."""
        feedback = [p for p in partitions if p.topic == feedback_topic]
        try:
            committed = consumer.committed(feedback, timeout=10) if feedback else []
        except KafkaException as exc:
            log.warning("no committed offsets to replay the feedback window from: %s", exc)
            committed = []
        rewound = {(c.topic, c.partition): max(0, c.offset - window_events)
                   for c in committed if c.offset >= 0}
        for p in partitions:
            if (p.topic, p.partition) in rewound:
                p.offset = rewound[(p.topic, p.partition)]
        consumer.assign(partitions)
        stats.assigned = True

    consumer.subscribe(list(topics), on_assign=on_assign)
    waiting: list[tuple[float, dict[str, Any], dict[tuple[str, int], int]]] = []  # (received at, request, feedback ends then)

    def feedback_ends() -> dict[tuple[str, int], int]:
        """The end of each assigned feedback partition, as the last fetch saw it."""
        ends = {}
        for tp in consumer.assignment():
            if tp.topic != feedback_topic:
                continue
            try:
                high = consumer.get_watermark_offsets(tp, cached=True)[1]
            except KafkaException:
                continue
            if high > 0:  # an empty partition has no position to wait for (it stays invalid)
                ends[(tp.topic, tp.partition)] = high
        return ends

    def reached(ends: dict[tuple[str, int], int]) -> bool:
        """The window holds the feedback that was out when the request arrived."""
        if not ends:
            return any(tp.topic == feedback_topic for tp in consumer.assignment())
        try:
            positions = consumer.position([TopicPartition(t, p) for t, p in ends])
        except KafkaException:
            return False
        return all(p.offset >= ends[(p.topic, p.partition)] for p in positions)

    last_schedule = time.monotonic()

    def ready(received: float, request: dict[str, Any], ends: dict[tuple[str, int], int]) -> bool:
        """A drift-triggered request waits for ``drift_min_samples`` feedback events from
        after the alarm (``drift_wait_seconds`` at most); any other waits (10 s at most)
        until the feedback window has caught up, so the retrain sees the feedback that
        raised it."""
        waited = time.monotonic() - received
        if "since_ms" in request["params"] and waited <= drift_wait_seconds:
            after = _after_alarm(windows[request["model"]], request["params"])
            return len(after) >= drift_min_samples
        return waited > 10 or reached(ends)

    def publish(records: list[ModelVersion]) -> None:
        publish_records(settings, records)
        registry.apply_all(records)

    def trigger(model: str, reason: str, by: str, params: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last_request.get(model, -1e9) < cooldown_seconds:
            return
        if any(request["model"] == model for _, request, _ in waiting):
            return  # one request at a time per model: the waiting one will see this data
        last_request[model] = now
        request_retrain(settings, model, reason=reason, by=by, params=params)
        log.info("retrain of %s requested: %s %s", model, reason, params)

    def execute(request: dict[str, Any]) -> None:
        model = request["model"]
        began = time.monotonic()
        stats.requests += 1
        champion = registry.champion(model)
        if champion is None:
            raise InvalidEventError(f"no champion for {model}: nothing to retrain from")
        window = list(windows[model])
        size = int(request["params"].get("window_events") or window_events)
        window = window[-size:]
        seconds = request["params"].get("window_seconds") or window_seconds
        frame = feedback_frame([r for r, _ in window], sources=[s for _, s in window],
                               window_seconds=float(seconds) if seconds else None)
        result = _best_candidate(frame, request["params"], policy, spec_name=champion.spec,
                                 seed=seed, champion=load(champion),
                                 holdout_fraction=holdout_fraction)
        learned = (f"the {result.train_samples} events after the alarm" if result.train_rows[0]
                   else f"the last {result.train_samples} events")
        why = f"retrain ({request['reason']} by {request['requested_by']}) on {learned}"
        with choosing_version(registry, follower):
            added = register_trained(
                settings, registry, model, result.model, spec_name=result.spec, stage="candidate",
                by="retrainer", reason=why, seed=seed, metrics=result.metrics,
                samples=result.samples, parent=champion.version,
                training_data=[OffsetRange(**d) for d in result.training_data],
            )
            publish(added)
        decision: Decision = policy.decide(result.candidate_metrics, result.champion_metrics,
                                           result.holdout_samples)
        version = added[-1].version
        publish(apply(decision, registry, model, version, by="retrainer", reason=why))
        stats.retrains += 1
        if telemetry is not None:
            telemetry.count_version(model)
            telemetry.count_decision(model, decision.action)
            telemetry.observe_latency("retrain", time.monotonic() - began)
        stats.decisions.append(f"{model} v{version}: {decision.action} ({decision.reason})")
        log.info("%s v%s: %s (%s)", model, version, decision.action, decision.reason)

    def failed(model: str) -> None:
        stats.failed += 1
        if telemetry is not None:
            telemetry.count_decision(model, "failed")

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
        previous = registry.previous_champion(model)
        key = (model, version)
        if key not in probation and previous is not None and registry.times_champion(model, version) == 1:
            before = live.get((model, previous.version))
            probation[key] = Probation(baseline=before[0] if before else policy.baseline(champion))
        if key in probation:
            rollback = probation[key].observe(policy, live_metric=value, samples=samples)
            if rollback is not None:
                publish(apply(rollback, registry, model, version, by="retrainer", reason="live check"))
                stats.rollbacks += 1
                if telemetry is not None:
                    telemetry.count_decision(model, "rollback")
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
                                {"detector": record["detector"], "error_after": record["statistic"],
                                 "since_ms": _millis(record["detected_at"])})
                elif role == "metrics":
                    watch(record)
                else:
                    waiting.append((time.monotonic(), record, feedback_ends()))
            while waiting and ready(*waiting[0]):
                _, request, _ = waiting.pop(0)
                try:
                    execute(request)
                except (RiveropsError, ValueError) as exc:
                    failed(request["model"])
                    log.error("retrain of %s failed: %s", request["model"], exc)
                except Exception:  # a bug in one retrain must not stop the role
                    failed(request["model"])
                    log.exception("retrain of %s failed unexpectedly", request["model"])
            if schedule_seconds and time.monotonic() - last_schedule >= schedule_seconds:
                last_schedule = time.monotonic()
                for model in registry.models:
                    trigger(model, "schedule", "schedule", {})
            if messages:
                commit(consumer, next_offsets(messages))
    finally:
        consumer.close()
        follower.close()
    return stats
