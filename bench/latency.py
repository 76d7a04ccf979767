"""End-to-end scoring latency at a fixed offered load: feature produced -> prediction readable.

A scorer worker runs; a paced producer sends features at ``rate`` events/s for
``seconds``, each stamped (event_time and Kafka timestamp) with the wall clock of its
``produce`` call; the scorer copies that time onto the prediction's Kafka timestamp; a
consumer that polls continuously notes the wall clock at which each prediction became
readable. Latency = readable - produced, in ms (Kafka timestamps have ms resolution).
Producer and reader run in threads of this process: librdkafka does their I/O outside
the GIL, and at 5k events/s their Python share is small next to the scorer's process.

The reader sets ``fetch.wait.max.ms`` to 10 ms, as a latency-sensitive consumer of the
predictions should on this broker: Tansu holds a fetch for the whole wait (librdkafka's
default 500 ms) instead of answering when data arrives (see :func:`measure_broker_floor`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.harness import create_plain_topics, start_worker
from bench.workload import feature_records, rows
from riverops.kafka.clients import consume_batch, make_consumer, make_producer
from riverops.kafka.topics import TopicCatalogue
from riverops.settings import Settings

__all__ = ["measure_latency", "measure_broker_floor", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) by nearest rank; NaN for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


def _paced_send(settings: Settings, producer: Any, topic: str, *, rate: float, seconds: float,
                sent: list[int], start: int) -> None:
    """Produce ``rate`` events/s for ``seconds``, each stamped with its produce time. The
    producer is the warmed-up one: a fresh idempotent producer holds its first records
    until it has a producer id, which showed as ~0.8 s of latency in the first second."""
    codec = settings.codec()
    xs = rows(min(int(rate * seconds), 50_000), seed=11)
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        ahead = due - time.perf_counter()
        if ahead > 0.0005:
            time.sleep(ahead)
        now = datetime.now(UTC)
        record = feature_records([xs[i % len(xs)]], start=start + i)[0]
        record["event_time"] = now  # the produce time: the prediction carries it back
        producer.produce(topic, key=record["event_id"], value=codec.encode("FeatureEvent", record),
                         timestamp=int(now.timestamp() * 1000))
        producer.poll(0)
    producer.flush(30)
    sent.append(total)
    sent.append(int((time.perf_counter() - t0) * 1000))


READER_CONFIG = {"fetch.wait.max.ms": 10}


def measure_latency(settings: Settings, *, rate: float, seconds: float, timeout: float = 120.0,
                    progress: Callable[[int], None] | None = None,
                    reader_config: dict[str, Any] | None = None,
                    producer_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Feature produced (by a producer with riverops' client defaults plus
    ``producer_config``: the service's) -> prediction readable, at ``rate`` offered."""
    catalogue = TopicCatalogue.from_settings(settings)
    features, predictions = catalogue.name("features"), catalogue.name("predictions")
    worker = start_worker(settings, "scorer", group_prefix=f"{settings.topic_prefix}g")
    reader_config = READER_CONFIG if reader_config is None else reader_config
    reader = make_consumer(settings, f"bench-latency-{uuid.uuid4().hex[:6]}", **reader_config)
    reader.subscribe([predictions])
    latencies: list[float] = []
    producer = make_producer(settings, **(producer_config or {}))
    try:
        # warm up at the offered rate: the scorer joined its group, the reader has its
        # partitions, the producer has its id and connections, and the first seconds at this
        # rate are behind (after a second at 1k/s, a traced run had 85% of its events over
        # 20 ms in its first second at 5k/s, in stalls of ~50 ms: docs/benchmarks.md)
        warm: list[int] = []
        _paced_send(settings, producer, features, rate=rate, seconds=3.0, sent=warm, start=0)
        seen, deadline = 0, time.monotonic() + timeout
        while seen < warm[0]:
            seen += sum(1 for m in reader.consume(1000, 0.1) if m.error() is None)
            worker.check()
            if time.monotonic() > deadline:
                raise TimeoutError("latency warm-up: predictions never came")
        sent: list[int] = []
        sender = threading.Thread(target=_paced_send, args=(settings, producer, features),
                                  kwargs={"rate": rate, "seconds": seconds, "sent": sent,
                                          "start": 1_000_000})
        expected = int(rate * seconds)
        cpu_at_start = worker.cpu()
        sender.start()
        deadline = time.monotonic() + seconds + timeout
        while len(latencies) < expected and time.monotonic() < deadline:
            for message in consume_batch(reader, 1000, 0.1):  # back as soon as one is readable
                if message.error() is None:
                    readable_ms = time.time() * 1000.0
                    latencies.append(readable_ms - message.timestamp()[1])
            if progress is not None:
                progress(len(latencies))
            worker.check()
        sender.join()
        scorer_cpu = worker.cpu() - cpu_at_start
    finally:
        worker.stop()
        reader.close()
    return {
        # the scorer's CPU per event at this rate: small batches, where the throughput
        # runs' are 1000 events
        "scorer_cpu_us_per_event": scorer_cpu / max(len(latencies), 1) * 1e6,
        "offered_per_s": rate, "achieved_per_s": sent[0] / (sent[1] / 1000) if sent[1] else 0.0,
        "events": len(latencies), "seconds": seconds,
        "p50_ms": percentile(latencies, 0.50), "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies, default=float("nan")),
        "peak_rss": worker.peak_rss, "reader_config": reader_config,
        "producer_config": producer_config or {},
    }


def measure_broker_floor(settings: Settings, *, rate: float, seconds: float,
                         producer_config: dict[str, Any] | None = None,
                         consumer_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Produce -> readable latency of the broker and clients alone (no scorer): the floor
    under the scoring latency, with riverops' client configs plus the given overrides."""
    topic = f"{settings.topic_prefix}floor-{uuid.uuid4().hex[:6]}"
    create_plain_topics(settings, [topic], settings.partitions)
    reader = make_consumer(settings, f"bench-floor-{uuid.uuid4().hex[:6]}",
                           **(consumer_config or {}))
    reader.subscribe([topic])
    producer = make_producer(settings, **(producer_config or {}))
    deadline = time.monotonic() + 30
    while not reader.assignment():  # every partition written below is read from offset 0
        reader.consume(10, 0.2)
        if time.monotonic() > deadline:
            raise TimeoutError("broker floor: the reader was never assigned its partitions")
    latencies: list[float] = []
    total = int(rate * seconds)

    def send() -> None:
        t0 = time.perf_counter()
        for i in range(total):
            ahead = t0 + i / rate - time.perf_counter()
            if ahead > 0.0005:
                time.sleep(ahead)
            producer.produce(topic, key=str(i), value=b"x" * 290, timestamp=int(time.time() * 1000))
            producer.poll(0)
        producer.flush(30)

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + seconds + 30
    try:
        while len(latencies) < total and time.monotonic() < deadline:
            for message in consume_batch(reader, 1000, 0.1):
                if message.error() is None:
                    latencies.append(time.time() * 1000.0 - message.timestamp()[1])
    finally:
        sender.join()
        reader.close()
    return {"producer": producer_config or {}, "consumer": consumer_config or {},
            "events": len(latencies), "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99)}
