"""Helpers for tests that run workers on the real broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from river.datasets import synth

from riverops.kafka.clients import make_consumer, ok
from riverops.kafka.producer import EventProducer
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.settings import Settings

from .secure import SecureKafka, start_secure_kafka


@pytest.fixture
def loop_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings with a signing key, artifact and state directories, topics created."""
    scoped = Settings(**{
        **settings.model_dump(), "signing_key": "test-signing-key",
        "artifact_dir": tmp_path / "artifacts", "state_dir": tmp_path / "state",
        "joiner": {"checkpoint_seconds": 0.5},
    })
    create_topics(AdminClient(scoped.kafka_config()), TopicCatalogue.from_settings(scoped))
    return scoped


@dataclass
class Running:
    name: str
    stop: threading.Event
    thread: threading.Thread
    stats: Any
    errors: list[BaseException]


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Running]]:
    """start_worker(run_function, settings, stats, group_id=None, **kwargs): a role in a
    thread (in a fresh group unless named), stopped at the end of the test; waits until its
    consumer group assigned it partitions."""
    started: list[Running] = []

    def start(run: Callable[..., Any], settings: Settings, stats: Any, group_id: str | None = None,
              **kwargs: Any) -> Running:
        stop, errors = threading.Event(), []
        group = group_id or f"riverops-t-{uuid.uuid4().hex[:6]}"

        def target() -> None:
            try:
                run(settings, stop=stop, stats=stats, group_id=group, **kwargs)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        running = Running(run.__name__, stop, thread, stats, errors)
        started.append(running)
        deadline = time.monotonic() + 30
        while not getattr(stats, "assigned", True) and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        assert not errors, errors
        return running

    yield start
    for running in started:
        running.stop.set()
    for running in started:
        running.thread.join(30)
        assert not running.errors, f"{running.name} failed: {running.errors}"


def send_labelled_at_rate(settings: Settings, *, rate: float, count: int, t0: datetime, seed: int,
                          sent: list[int], stop: threading.Event | None = None) -> None:
    """``count`` Agrawal events at ``rate`` per second of wall time, each followed by its
    label one second of event time later, event times ``1/rate`` s apart from ``t0``;
    ``sent[0]`` counts them as they go (for a test thread watching the stream). ``stop``
    ends the stream early, once set."""
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for i, (x, y) in enumerate(synth.Agrawal(classification_function=0, seed=seed).take(count)):
            if stop is not None and stop.is_set():
                break
            when = t0 + timedelta(milliseconds=1000 * i / rate)
            producer.send_features(event_id=f"e{i}", model="fraud", entity_id="c", features=x, event_time=when)
            producer.send_label(event_id=f"e{i}", model="fraud", label=bool(y),
                                label_time=when + timedelta(seconds=1))
            sent[0] = i + 1
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        producer.flush(120)  # a fault test's last records may wait out a broker's recovery


def read_topic(settings: Settings, role: str, schema: str, *, expected: int, timeout: float = 60,
               settle: float = 1.0, group_prefix: str = "read") -> list[dict[str, Any]]:
    """Every record of a topic until ``expected`` arrived (then ``settle`` s more); a
    refusal by the broker raises (``ok``), other consumer errors are skipped."""
    codec = settings.codec()
    consumer = make_consumer(settings, f"{group_prefix}-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([TopicCatalogue.from_settings(settings).name(role)])  # type: ignore[arg-type]
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out += [codec.decode(schema, m.value()) for m in consumer.consume(1000, 0.5) if ok(m)]
        end = time.monotonic() + settle
        while time.monotonic() < end:
            out += [codec.decode(schema, m.value()) for m in consumer.consume(1000, 0.2) if ok(m)]
    finally:
        consumer.close()
    return out


def writer_schemas(settings: Settings, role: str, expected: int, timeout: float = 60) -> Counter[bytes]:
    """How many records of a topic each writer schema (single-object fingerprint) wrote,
    once ``expected`` records were read."""
    consumer = make_consumer(settings, f"read-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([TopicCatalogue.from_settings(settings).name(role)])  # type: ignore[arg-type]
    found: Counter[bytes] = Counter()
    deadline = time.monotonic() + timeout
    try:
        while found.total() < expected and time.monotonic() < deadline:
            found.update(m.value()[2:10] for m in consumer.consume(1000, 0.5) if ok(m))
    finally:
        consumer.close()
    return found


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One Apache Kafka with mTLS, SASL/SCRAM and ACLs for the security tests."""
    secured = start_secure_kafka(tmp_path_factory.mktemp("secure-kafka"))
    try:
        yield secured
    finally:
        secured.cluster.remove()
