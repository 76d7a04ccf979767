"""The learner role: learns incrementally from feedback and publishes snapshots as versions.

One learner per model name starts from a copy of the current champion and learns from
the feedback stream in order; every ``every_samples`` labelled events or ``every_seconds``
it publishes a snapshot as a new *candidate* version with its lineage (parent, feedback
offset ranges, samples, progressive metrics). Candidates are served only when promoted
(by hand, or as a challenger or shadow).

A snapshot is also the learner's checkpoint: offsets are committed only after snapshots
are published (when one model is due, every model with new samples is snapshotted), and
their versions are written to ``RIVEROPS_STATE_DIR/learner/GROUP.json``.
After a crash the learner resumes from that snapshot (when it still descends from the
current champion; else from the champion) and re-learns the feedback after it, so no
labelled event is lost or learned twice by the model that goes on; the price is that the
group's committed offsets trail by up to one snapshot period (``every_samples`` events or
``every_seconds``), which the lag view shows, and that dead letters of that tail repeat.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

from riverops.kafka.clients import commit, make_consumer, next_offsets, ok
from riverops.kafka.deadletter import dead_letter
from riverops.kafka.outbox import Outbox
from riverops.kafka.registry_topic import RegistryFollower, choosing_version, publish_records
from riverops.kafka.topics import TopicCatalogue
from riverops.modelops import model_loader, register_trained
from riverops.models.registry import Registry
from riverops.roles.learner import LearnerCore, Start
from riverops.schemas.errors import DecodeError, InvalidEventError, RegistryError
from riverops.schemas.events import ModelVersion, OffsetRange
from riverops.settings import Settings
from riverops.statefile import read_json, write_json
from riverops.telemetry import Telemetry

__all__ = ["LearnerStats", "run_learner"]

log = logging.getLogger(__name__)


@dataclass
class LearnerStats:
    learned: int = 0
    duplicates: int = 0
    rejected: int = 0
    snapshots: int = 0
    assigned: bool = False


def _resumable(registry: Registry, model: str, version: int | None,
               champion: int) -> ModelVersion | None:
    """The learner snapshot ``model:version`` if it still descends from ``champion`` (its
    parents lead there: the learner started from that champion); None otherwise."""
    try:
        record = registry.get(model, version) if version is not None else None
    except RegistryError:
        return None
    step: ModelVersion | None = record
    while step is not None and step.lineage.parent is not None:
        if step.lineage.parent == champion:
            return record
        try:
            step = registry.get(model, step.lineage.parent)
        except RegistryError:
            return None
    return None


def run_learner(
    settings: Settings,
    *,
    stop: threading.Event,
    group_id: str = "riverops-learner",
    telemetry: Telemetry | None = None,
    stats: LearnerStats | None = None,
    every_samples: int = 5_000,
    every_seconds: float = 60.0,
) -> LearnerStats:
    """Learn from feedback until ``stop`` is set."""
    stats = stats or LearnerStats()
    codec = settings.codec()
    catalogue = TopicCatalogue.from_settings(settings)
    feedback_topic = catalogue.name("feedback")
    load = model_loader(settings)
    registry = Registry()
    follower = RegistryFollower(settings, codec=codec)
    follower.read_to_end(registry)

    resume_file = settings.state_dir / "learner" / f"{group_id}.json"
    resume: dict[str, int] = read_json(resume_file) or {}

    def start(model: str) -> Start:
        champion = registry.champion(model)
        if champion is None:
            raise InvalidEventError(f"unknown model {model!r}: no champion to learn from")
        saved = _resumable(registry, model, resume.get(model), champion.version)
        if saved is not None:
            log.info("%s: resuming from learner snapshot v%s", model, saved.version)
            return Start(copy.deepcopy(load(saved)), saved.spec, saved.version, saved.task,
                         saved.lineage.samples)
        return Start(copy.deepcopy(load(champion)), champion.spec, champion.version, champion.task)

    core = LearnerCore(start, every_samples=every_samples, every_seconds=every_seconds)
    consumer = make_consumer(settings, group_id)
    consumer.subscribe([feedback_topic], on_assign=lambda *_: setattr(stats, "assigned", True))
    outbox = Outbox(settings, codec=codec)
    consumed: dict[tuple[str, int], TopicPartition] = {}  # next offsets, committed at snapshots
    try:
        while not stop.is_set():
            registry.apply_all(follower.poll(timeout=0))
            messages = [m for m in consumer.consume(settings.batch_size, 0.2) if ok(m)]
            dead: list[dict[str, Any]] = []
            if messages:
                consumed.update({(tp.topic, tp.partition): tp for tp in next_offsets(messages)})
                decoded = codec.decode_many("FeedbackEvent", [m.value() for m in messages])
                records, sources, by_source = [], [], {}
                for message, item in zip(messages, decoded, strict=True):
                    if isinstance(item, DecodeError):
                        dead.append(dead_letter(message, item, processor="learner"))
                        continue
                    source = (message.topic() or "", message.partition() or 0, message.offset() or 0)
                    records.append(item)
                    sources.append(source)
                    by_source[source] = message
                started = time.perf_counter()
                result = core.update(records, sources=sources)
                if telemetry is not None:
                    telemetry.observe_latency("learn", time.perf_counter() - started)
                for rejected in result.rejected:
                    origin = by_source.get(rejected.source) if rejected.source else None
                    if origin is not None:
                        dead.append(dead_letter(origin, rejected.error, processor="learner"))
                stats.learned += result.learned
                stats.duplicates += result.duplicates
                stats.rejected += len(result.rejected)
                if telemetry is not None:
                    telemetry.count_in(feedback_topic, len(messages))
            snapshotted = False
            due = core.due(time.monotonic())
            if due:  # then every model with new samples, so that the commit below loses none
                due = [s.model for s in core.status() if s.samples]
            for model in due:
                snap = core.snapshot(model, now_seconds=time.monotonic())
                with choosing_version(registry, follower):
                    records_ = register_trained(
                        settings, registry, model, snap.estimator, spec_name=snap.spec,
                        stage="candidate", by="learner",
                        reason=f"online learning snapshot after {snap.total_samples} samples",
                        metrics=snap.metrics, samples=snap.total_samples, parent=snap.parent,
                        training_data=[OffsetRange(**d) for d in snap.training_data],
                    )
                    publish_records(settings, records_)
                    registry.apply_all(records_)
                resume[model] = records_[-1].version
                write_json(resume_file, resume)
                stats.snapshots += 1
                if telemetry is not None:
                    telemetry.count_version(model)
                log.info("%s snapshot published as v%s", model, records_[-1].version)
                snapshotted = True
            outbox.send(catalogue.name("deadletter"), "DeadLetter", dead, key="key")
            outbox.flush("learner dead letters")
            if snapshotted and consumed:
                # everything learned so far is in a published snapshot
                commit(consumer, list(consumed.values()))
    finally:
        outbox.close()
        consumer.close()
        follower.close()
    return stats
