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

from bench.harness import Counter, Worker, preload, start_worker, time_outputs
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
    measured, _ = time_outputs(worker, counter, warmup=warmup, events=events, timeout=timeout,
                               progress=progress, broker_pid=broker_pid, attach=attach)
    return measured
