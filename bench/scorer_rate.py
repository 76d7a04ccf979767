"""riverops' scorer alone: features topic -> predictions topic, one worker process.

``warmup + events`` feature events are preloaded, then ``riverops worker scorer`` starts;
the clock runs from the moment the warm-up predictions are readable (group joined, model
loaded, batches flowing) to the moment the last prediction is readable, so the figure is
the steady rate of a worker that never waits for input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Counter, Worker, cpu_seconds, preload, start_worker
from bench.workload import encode_all, feature_records, rows
from riverops.kafka.topics import TopicCatalogue
from riverops.settings import Settings

__all__ = ["measure_scorer"]


def measure_scorer(settings: Settings, workdir: Path, *, events: int, warmup: int,
                   timeout: float = 300.0, progress: Any = None,
                   broker_pid: int | None = None,
                   attach: Callable[[list[Worker]], Callable[[], None]] | None = None) -> dict[str, Any]:
    """``attach`` (a profiler) is called with the worker when the clock starts; what it
    returns, when the clock stops."""
    catalogue = TopicCatalogue.from_settings(settings)
    total = warmup + events
    items = encode_all(settings.codec(), "FeatureEvent", feature_records(rows(total, seed=7)),
                       key="event_id", time_field="event_time")
    preload(settings, catalogue.name("features"), items)
    counter = Counter(settings, catalogue.name("predictions"))
    counter.wait_assigned()  # reading before the worker starts: no burst at the clock's start
    worker = start_worker(settings, "scorer", group_prefix=f"{settings.topic_prefix}g")
    try:
        started = counter.wait_for(warmup, timeout=timeout, check=worker.check, progress=progress)
        cpu_at_start = worker.cpu()
        broker_at_start = cpu_seconds(broker_pid) if broker_pid else 0.0
        detach = attach([worker]) if attach else None
        done = counter.wait_for(total, timeout=timeout, check=worker.check, progress=progress)
        if detach is not None:
            detach()
        cpu = (worker.cpu() - cpu_at_start) / events * 1e6
        broker_cpu = (cpu_seconds(broker_pid) - broker_at_start) / events * 1e6 if broker_pid else None
    finally:
        worker.stop()
        counter.close()
    return {"events_per_s": events / (done - started), "events": events,
            "seconds": done - started, "peak_rss": worker.peak_rss, "cpu_us_per_event": cpu,
            "broker_cpu_us_per_event": broker_cpu}
