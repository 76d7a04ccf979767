"""A joiner partition moved to a fresh instance with no local state restores its pending
events from the changelog: 100,000 of them, against the time to replay the inputs.

The stream: 100,000 events whose features and champion prediction arrived and whose label
has not (so each is pending), on one partition. A joiner (exactly once) reads it all and
stops cleanly; a second joiner of the same group, with an empty state directory (another
host), takes the partition: it must hold the same 100,000 pending events, restored from
the changelog, and start at the committed offsets. For comparison, the first joiner built
the same state by reading the 200,000 input records: what a replay of the inputs costs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from riverops.kafka.clients import make_producer
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(400)]
N = 100_000


def _produce(settings: Settings) -> None:
    codec, catalogue = settings.codec(), TopicCatalogue.from_settings(settings)
    producer = make_producer(settings)
    t0 = 1_764_000_000_000
    for start in range(0, N, 5_000):
        ids = [f"e{i}" for i in range(start, min(start + 5_000, N))]
        features = codec.encode_many("FeatureEvent", [
            {"event_id": e, "model": "fraud", "entity_id": "c", "event_time": t0 + i,
             "features": {"amount": float(i % 100), "country": "FR"}} for i, e in enumerate(ids, start)])
        predictions = codec.encode_many("PredictionEvent", [
            {"event_id": e, "model": "fraud", "version": 1, "variant": "champion", "prediction": False,
             "scores": {"True": 0.1, "False": 0.9}, "latency": 0.001, "event_time": t0 + i,
             "predicted_at": t0 + i + 1} for i, e in enumerate(ids, start)])
        for i, (e, f, p) in enumerate(zip(ids, features, predictions, strict=True), start):
            producer.produce(catalogue.name("features"), key=e, value=f, timestamp=t0 + i)
            producer.produce(catalogue.name("predictions"), key=e, value=p, timestamp=t0 + i + 1)
        producer.poll(0)
    assert producer.flush(60) == 0


def _run_until(settings: Settings, group: str, done: Callable[[JoinerStats], bool],
               timeout: float = 240) -> tuple[JoinerStats, float, int]:
    """Run a joiner until ``done``; its stats, the seconds it took, the pending events then
    (a stop revokes the partitions, which empties the stats' cores)."""
    stats, stop, errors = JoinerStats(), threading.Event(), []
    started = time.monotonic()

    def target() -> None:
        try:
            run_joiner(settings, stop=stop, group_id=group, stats=stats)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = started + timeout
    while not (stats.cores and done(stats)) and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    took, pending = time.monotonic() - started, _pending(stats)
    stop.set()
    thread.join(60)
    assert not errors, errors
    return stats, took, pending


def _pending(stats: JoinerStats) -> int:
    return sum(core.pending for core in (stats.cores or {}).values())


def test_a_fresh_instance_restores_100k_pending_events_from_the_changelog(settings: Settings,
                                                                          tmp_path: Path) -> None:
    base = Settings(**{**settings.model_dump(), "partitions": 1, "state_dir": tmp_path / "host-a",
                       "joiner": {"checkpoint_seconds": 1.0}})
    create_topics(AdminClient(base.kafka_config()), TopicCatalogue.from_settings(base))
    _produce(base)
    group = f"restore-{uuid.uuid4().hex[:6]}"
    first, built, pending = _run_until(base, group, lambda s: s.consumed == 2 * N)
    assert pending == N and first.restored == 0

    elsewhere = Settings(**{**base.model_dump(), "state_dir": tmp_path / "host-b"})  # no local state
    second, restore_wall, pending = _run_until(elsewhere, group, lambda s: s.restored > 0)
    assert second.restored == 1 and pending == N
    assert second.consumed == 0  # it started at the committed offsets: nothing to re-read

    print(f"\n{N:,} pending events: restored from the changelog by reading {second.restored_records:,} "
          f"records in {second.restore_seconds:.2f}s ({restore_wall:.1f}s from start to restored); "
          f"replaying the inputs (the first joiner's run): {first.consumed:,} records in {built:.1f}s")
    assert second.restored_records >= N  # every pending event has its record
