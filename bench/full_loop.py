"""The full loop with labels: scorer, joiner, monitor and learner, one worker process each.

Features and their labels (one second later in event time) are preloaded; the four
workers start; the clock runs from the moment the monitor has committed the warm-up
events' feedback to the moment it has committed all of it. The figure is labelled events/s
through scorer, joiner and monitor, with the learner learning alongside on the same cores
(as ``riverops worker all`` on one host would). The learner is not on the clock: it
commits its feedback offsets only with a model snapshot (every 5,000 samples or 60 s), so
its committed position says when it last snapshotted, not how far it learned; the result
records that position when the clock stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from bench.harness import Worker, cpu_seconds, preload, start_worker
from bench.workload import encode_all, feature_records, label_records, rows
from riverops.kafka.clients import make_consumer
from riverops.kafka.topics import TopicCatalogue
from riverops.settings import Settings

__all__ = ["ROLES", "measure_full_loop"]

ROLES = ("scorer", "joiner", "monitor", "learner")


_COORDINATOR_AWAY = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                     KafkaError.COORDINATOR_NOT_AVAILABLE)


class _Committed:
    """Committed offsets of consumer groups on one topic (OffsetFetch only: no group join)."""

    def __init__(self, settings: Settings, groups: list[str], topic: str) -> None:
        self._consumers = {g: make_consumer(settings, g) for g in groups}
        self._partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]

    def least(self) -> int:
        """Records committed by the group that is furthest behind (0 while a new group's
        coordinator is still loading: asked again at the next call)."""
        try:
            return min(
                sum(max(tp.offset, 0) for tp in consumer.committed(self._partitions, timeout=10))
                for consumer in self._consumers.values()
            )
        except KafkaException as exc:
            if exc.args[0].code() not in _COORDINATOR_AWAY and not exc.args[0].retriable():
                raise
            return 0

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()


def _wait(done: Callable[[], int], expected: int, *, workers: list[Worker], timeout: float,
          progress: Callable[[int], None] | None) -> float:
    deadline = time.monotonic() + timeout
    while (count := done()) < expected:
        if progress is not None:
            progress(count)
        for worker in workers:
            worker.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"full loop: {count} of {expected} labelled events after {timeout:.0f} s")
        time.sleep(0.05)
    if progress is not None:
        progress(count)
    return time.perf_counter()


def measure_full_loop(settings: Settings, workdir: Path, *, events: int, warmup: int,
                      timeout: float = 600.0, progress: Callable[[int], None] | None = None,
                      broker_pid: int | None = None,
                      attach: Callable[[list[Worker]], Callable[[], None]] | None = None
                      ) -> dict[str, Any]:
    """``attach`` (a profiler) is called with the workers when the clock starts; what it
    returns, when the clock stops."""
    catalogue = TopicCatalogue.from_settings(settings)
    total = warmup + events
    xs = rows(total, seed=7)
    codec = settings.codec()
    preload(settings, catalogue.name("features"),
            encode_all(codec, "FeatureEvent", feature_records(xs), key="event_id",
                       time_field="event_time"))
    preload(settings, catalogue.name("labels"),
            encode_all(codec, "LabelEvent", label_records(xs), key="event_id",
                       time_field="label_time"))
    prefix = f"{settings.topic_prefix}g"
    workers = [start_worker(settings, role, group_prefix=prefix) for role in ROLES]
    feedback = catalogue.name("feedback")
    committed = _Committed(settings, [f"{prefix}-monitor"], feedback)
    learner = _Committed(settings, [f"{prefix}-learner"], feedback)
    try:
        started = _wait(committed.least, warmup, workers=workers, timeout=timeout, progress=progress)
        cpu_at_start = {worker.role: worker.cpu() for worker in workers}
        broker_at_start = cpu_seconds(broker_pid) if broker_pid else 0.0
        detach = attach(workers) if attach else None
        done = _wait(committed.least, total, workers=workers, timeout=timeout, progress=progress)
        if detach is not None:
            detach()
        cpu = {worker.role: (worker.cpu() - cpu_at_start[worker.role]) / events * 1e6
               for worker in workers}
        if broker_pid:
            cpu["broker"] = (cpu_seconds(broker_pid) - broker_at_start) / events * 1e6
        learner_committed = learner.least()
    finally:
        for worker in workers:
            worker.stop()
        committed.close()
        learner.close()
    return {"events_per_s": events / (done - started), "events": events,
            "seconds": done - started, "learner_committed": learner_committed, "total": total,
            "cpu_us_per_event": cpu,
            "peak_rss": {worker.role: worker.peak_rss for worker in workers}}
