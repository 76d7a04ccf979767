"""The learner role: learns incrementally from feedback and publishes snapshots as versions.

One learner per model name starts from a copy of the current champion and learns from
the feedback stream in order; every ``every_samples`` labelled events or ``every_seconds``
it publishes a snapshot as a new *candidate* version with its lineage (parent, feedback
offset ranges, samples, progressive metrics). Candidates are served only when promoted
(by hand, or as a challenger or shadow). The learner's model lives in memory: after a
restart it starts again from the champion and learns from the committed offset on.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from models.registry import Registry
from schemas.errors import DecodeError, InvalidEventError
from schemas.events import OffsetRange
from streams.clients import make_consumer, next_offsets, ok
from streams.deadletter import dead_letter
from streams.learner import LearnerCore, Start
from streams.modelops import model_loader, register_trained
from streams.outbox import Outbox
from streams.registry_topic import RegistryFollower, publish_records
from streams.settings import Settings
from streams.telemetry import Telemetry
from streams.topics import TopicCatalogue

__all__ = ["LearnerStats", "run_learner"]

log = logging.getLogger(__name__)


@dataclass
class LearnerStats:
    learned: int = 0
    duplicates: int = 0
    rejected: int = 0
    snapshots: int = 0
    assigned: bool = False


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

    def start(model: str) -> Start:
        champion = registry.champion(model)
        if champion is None:
            raise InvalidEventError(f"unknown model {model!r}: no champion to learn from")
        return Start(copy.deepcopy(load(champion)), champion.spec, champion.version, champion.task)

    core = LearnerCore(start, every_samples=every_samples, every_seconds=every_seconds)
    consumer = make_consumer(settings, group_id)
    consumer.subscribe([feedback_topic], on_assign=lambda *_: setattr(stats, "assigned", True))
    outbox = Outbox(settings, codec=codec)
    try:
        while not stop.is_set():
            registry.apply_all(follower.poll(timeout=0))
            messages = [m for m in consumer.consume(settings.batch_size, 0.2) if ok(m)]
            dead: list[dict[str, Any]] = []
            if messages:
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
                result = core.update(records, sources=sources)
                for rejected in result.rejected:
                    origin = by_source.get(rejected.source) if rejected.source else None
                    if origin is not None:
                        dead.append(dead_letter(origin, rejected.error, processor="learner"))
                stats.learned += result.learned
                stats.duplicates += result.duplicates
                stats.rejected += len(result.rejected)
                if telemetry is not None:
                    telemetry.count_in(feedback_topic, len(messages))
            for model in core.due(time.monotonic()):
                snap = core.snapshot(model, now_seconds=time.monotonic())
                records_ = register_trained(
                    settings, registry, model, snap.estimator, spec_name=snap.spec, stage="candidate",
                    by="learner", reason=f"online learning snapshot after {snap.total_samples} samples",
                    metrics=snap.metrics, samples=snap.total_samples, parent=snap.parent,
                    training_data=[OffsetRange(**d) for d in snap.training_data],
                )
                publish_records(settings, records_)
                registry.apply_all(records_)
                stats.snapshots += 1
                log.info("%s snapshot published as v%s", model, records_[-1].version)
            outbox.send(catalogue.name("deadletter"), "DeadLetter", dead, key="key")
            outbox.flush("learner dead letters")
            if messages:
                consumer.commit(offsets=next_offsets(messages), asynchronous=False)
    finally:
        outbox.close()
        consumer.close()
        follower.close()
    return stats
