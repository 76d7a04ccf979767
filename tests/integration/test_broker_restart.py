"""Stop the broker (SIGTERM, a controlled shutdown) mid-stream and start it again on the same
log directory: every topic, committed offset and registry version is still there, and the
scorer, joiner and monitor (threads that were never restarted) carry on by themselves:
every feature scored, every label joined, the monitor counts each event once. The
recovery times are printed, not asserted. The embedded broker (memory only) could not do
this: a restart wiped everything.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from riverops.kafka.cluster import KafkaCluster
from riverops.kafka.lag import LagProbe
from riverops.kafka.registry_topic import read_registry
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.roles.scorer import ScorerStats, run_scorer
from riverops.sections import DataDriftSettings, MonitorSettings
from riverops.settings import Settings

from ..conftest import ENGINE, broker_dir
from .champion import register_champion
from .conftest import read_topic, send_labelled_at_rate

pytestmark = [
    pytest.mark.faults,
    pytest.mark.serial,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        ENGINE != "kafka" and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        reason="needs Apache Kafka's persistent log directories (Tansu keeps memory only; "
               "its pass runs only -m tansu)",
    ),
]
RATE = 300  # events per second, each with its label
SECONDS = 30
STOP_AT, DOWN_FOR = 8.0, 5.0
GROUPS = "riverops-t-"  # the start_worker fixture's group ids


def _port_below_ephemeral_range() -> int:
    """A free port under the kernel's ephemeral range: while the broker is down, the clients'
    reconnects take source ports from that range, and one landing on the listener's own port
    (a TCP self-connect to a closed loopback port) would keep the broker from binding it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 32_000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    """A broker of this test's own, on a data directory that survives a stop and start
    (requested before start_worker, so it outlives the workers' shutdown)."""
    kafka = KafkaCluster(data_dir=broker_dir(tmp_path), port=_port_below_ephemeral_range())
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.remove()


def _send(settings: Settings, sent: list[int], errors: list[BaseException]) -> None:
    """RATE events/s for SECONDS, each followed by its label; ``sent[0]`` counts them and
    ``errors`` gets what the producer raised (a record the broker did not acknowledge).

    Stamped with the time of the run, not the fixed dates of the other tests: the records'
    Kafka timestamp is their event time, and a broker that restarts drops the idempotent
    producer state of every partition whose last record is stamped more than
    ``producer.id.expiration.ms`` (1 day) ago. With the fixed dates, the broker then took
    the producer's next batch after a sequence gap, and 2 features that librdkafka had
    reported delivered were missing from the log (2 runs of 7)."""
    try:
        send_labelled_at_rate(settings, rate=RATE, count=RATE * SECONDS, t0=datetime.now(UTC), seed=5, sent=sent)
    except BaseException as exc:
        errors.append(exc)


def _topics(settings: Settings) -> dict[str, int]:
    metadata = AdminClient(settings.kafka_config()).list_topics(timeout=15)
    return {name: len(t.partitions) for name, t in metadata.topics.items()
            if name.startswith(settings.topic_prefix)}


def _committed(settings: Settings, groups: int) -> dict[tuple[str, str, int], int]:
    """The committed offsets of the workers' groups, once ``groups`` of them are listed.

    Right after a restart ListConsumerGroups answers COORDINATOR_LOAD_IN_PROGRESS for a
    moment, and LagProbe.committed_offsets ignores that error and lists no group at all."""
    deadline = time.monotonic() + 30
    with LagProbe(settings, group_prefix=GROUPS, timeout=15) as probe:
        while True:
            committed = probe.committed_offsets()
            if len({g for g, _, _ in committed}) >= groups or time.monotonic() > deadline:
                return committed
            time.sleep(0.2)


def test_broker_stopped_and_restarted_on_its_log_dir_keeps_everything(
    cluster: KafkaCluster, tmp_path: Path, start_worker: Any
) -> None:
    settings = Settings(
        bootstrap_servers=cluster.bootstrap_servers, topic_prefix=f"t-{uuid.uuid4().hex[:8]}.",
        partitions=2, session_timeout_ms=6000, signing_key="restart-key",  # type: ignore[arg-type]
        artifact_dir=tmp_path / "artifacts", state_dir=tmp_path / "state", joiner={"checkpoint_seconds": 0.5},
    )
    create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
    register_champion(settings)
    registry_before = read_registry(settings).snapshot()
    scorer = start_worker(run_scorer, settings, ScorerStats())
    joiner = start_worker(run_joiner, settings, JoinerStats())
    monitoring = settings.model_copy(update={"monitor": MonitorSettings(
        emit_seconds=0.5, window_size=10**6, time_window=10**9, data_drift=DataDriftSettings(enabled=False))})
    monitor = start_worker(run_monitor, monitoring, MonitorStats())

    sent, send_errors = [0], []
    sender = threading.Thread(target=_send, args=(settings, sent, send_errors))
    began = time.monotonic()
    sender.start()
    time.sleep(STOP_AT)
    topics_before, committed_before = _topics(settings), _committed(settings, 3)
    stopping = time.monotonic()
    cluster.stop()
    stopped = time.monotonic()
    time.sleep(DOWN_FOR)
    before = (scorer.stats.predictions, joiner.stats.feedback)
    restarting = time.monotonic()
    cluster.start()
    ready, backlog = time.monotonic(), sent[0]
    with LagProbe(settings, group_prefix=GROUPS) as probe:
        rows_at_ready = len(probe.sample())  # reported: 0 while the group coordinator loads
    committed_restarted = _committed(settings, 3)
    first_output = caught_up = None
    while caught_up is None and time.monotonic() - ready < 120:
        now = time.monotonic()
        if first_output is None and (scorer.stats.predictions, joiner.stats.feedback) > before:
            first_output = now - ready
        if joiner.stats.feedback >= backlog and monitor.stats.feedback >= backlog:
            caught_up = now - ready
        time.sleep(0.05)
    sender.join()
    assert not send_errors, f"the producer lost records across the restart: {send_errors}"
    total = sent[0]
    deadline = time.monotonic() + 90
    while [s.samples for s in monitor.stats.status] != [total] and time.monotonic() < deadline:
        time.sleep(0.2)
    lag: list[Any] = []
    with LagProbe(settings, group_prefix=GROUPS) as probe:
        while time.monotonic() < deadline:
            rows = probe.sample()
            lag = [row for row in rows if row.lag]
            if not lag and {r.group for r in rows} == {g for g, _, _ in committed_before}:
                break
            time.sleep(0.5)
    for running in (scorer, joiner, monitor):
        assert running.thread.is_alive() and not running.errors, (running.name, running.errors)

    # the broker kept every topic, offset and registry record across the restart
    catalogue = {spec.name: spec.partitions for spec in TopicCatalogue.from_settings(settings)}
    changelogs = {name: n for name, n in topics_before.items() if name.endswith(".join-state")}
    # the joiner's state changelog exists under exactly once only
    assert list(changelogs.values()) == ([settings.partitions] if settings.processing_guarantee == "exactly_once" else [])
    assert _topics(settings) == topics_before == {**catalogue, **changelogs}
    assert len({g for g, _, _ in committed_before}) == 3, f"not every worker had committed: {committed_before}"
    assert set(committed_before) <= set(committed_restarted)
    went_back = {k: (v, committed_restarted[k]) for k, v in committed_before.items() if committed_restarted[k] < v}
    assert not went_back, f"committed offsets went backwards across the restart: {went_back}"
    committed_after = _committed(settings, 3)
    assert all(committed_after[k] >= v for k, v in committed_restarted.items())
    assert read_registry(settings).snapshot() == registry_before
    features = read_topic(settings, "features", "FeatureEvent", expected=total, settle=1)
    labels = read_topic(settings, "labels", "LabelEvent", expected=total, settle=1)
    # and the workers carried on: everything scored, joined, counted once
    predictions = read_topic(settings, "predictions", "PredictionEvent", expected=total, settle=1)
    feedback = read_topic(settings, "feedback", "FeedbackEvent", expected=total, settle=1)
    everything = {f"e{i}" for i in range(total)}
    assert {f["event_id"] for f in features} == everything == {lb["event_id"] for lb in labels}
    assert {p["event_id"] for p in predictions} == everything, "a feature was not scored"
    assert {f["event_id"] for f in feedback} == everything, "a label was not joined"
    (status,) = monitor.stats.status
    assert status.samples == total
    assert lag == [], f"lag did not drain: {lag}"
    print(f"\nbroker stopped at {STOP_AT:.0f}s of a {RATE}/s stream ({total} events) for "
          f"{restarting - stopped:.1f}s: SIGTERM shutdown {stopped - stopping:.1f}s, start to "
          f"ready {ready - restarting:.1f}s; backlog at ready {backlog}; first output {first_output}s "
          f"after ready; backlog joined and monitored {caught_up}s after ready; features "
          f"{len(features)} labels {len(labels)} (producer duplicates "
          f"{len(features) + len(labels) - 2 * total}); predictions {len(predictions)} (re-scored "
          f"{len(predictions) - total}), feedback {len(feedback)} (repeated {len(feedback) - total}), "
          f"monitor duplicates dropped {monitor.stats.duplicates}; lag rows sampled at ready {rows_at_ready}; committed offsets {len(committed_after)} "
          f"partitions of {len({g for g, _, _ in committed_after})} groups; run {time.monotonic() - began:.0f}s")
