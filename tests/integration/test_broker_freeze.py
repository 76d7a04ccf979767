"""SIGSTOP the broker for 20 s mid-stream, then SIGCONT: the workers reconnect by themselves,
every feature is scored, every label joined, the monitor counts each event once and the
lag drains. The recovery times are printed (and written in docs/reliability.md), not
asserted."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from riverops.kafka.cluster import KafkaCluster
from riverops.kafka.lag import LagProbe
from riverops.kafka.tansu import EmbeddedBroker
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.roles.scorer import ScorerStats, run_scorer
from riverops.sections import DataDriftSettings, MonitorSettings
from riverops.settings import Settings

from ..conftest import ENGINE
from .champion import register_champion
from .conftest import read_topic, send_labelled_at_rate

pytestmark = [pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(400)]  # its own waits add up to ~300 s
RATE = 400  # events per second, each with its label
SECONDS = 45
FREEZE_AT, FREEZE_FOR = 10.0, 20.0


def test_broker_frozen_20_s_then_resumed(own_broker: EmbeddedBroker | KafkaCluster, tmp_path: Path, start_worker: Any) -> None:
    settings = Settings(
        bootstrap_servers=own_broker.bootstrap_servers, topic_prefix=f"t-{uuid.uuid4().hex[:8]}.",
        partitions=2, session_timeout_ms=6000, signing_key="freeze-key",  # type: ignore[arg-type]
        artifact_dir=tmp_path / "artifacts", state_dir=tmp_path / "state", joiner={"checkpoint_seconds": 0.5},
        processing_guarantee="at_least_once" if ENGINE == "tansu" else "exactly_once",
    )
    create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
    register_champion(settings)
    scorer = start_worker(run_scorer, settings, ScorerStats())
    joiner = start_worker(run_joiner, settings, JoinerStats())
    monitoring = settings.model_copy(update={"monitor": MonitorSettings(
        emit_seconds=0.5, window_size=10**6, time_window=10**9, data_drift=DataDriftSettings(enabled=False))})
    monitor = start_worker(run_monitor, monitoring, MonitorStats())

    sent = [0]
    sender = threading.Thread(target=send_labelled_at_rate, args=(settings,), kwargs={
        "rate": RATE, "count": RATE * SECONDS, "t0": datetime(2026, 11, 1, tzinfo=UTC), "seed": 4, "sent": sent})
    started = time.monotonic()
    sender.start()
    time.sleep(FREEZE_AT)
    os.kill(own_broker.pid, signal.SIGSTOP)
    time.sleep(FREEZE_FOR)
    before = (scorer.stats.predictions, joiner.stats.feedback, monitor.stats.feedback)
    os.kill(own_broker.pid, signal.SIGCONT)
    resumed, backlog = time.monotonic(), sent[0]
    first_output = caught_up = None
    while caught_up is None and time.monotonic() - resumed < 120:
        now = time.monotonic()
        if first_output is None and (scorer.stats.predictions, joiner.stats.feedback) > before[:2]:
            first_output = now - resumed
        if joiner.stats.feedback >= backlog and monitor.stats.feedback >= backlog:
            caught_up = now - resumed
        time.sleep(0.05)
    sender.join()
    total = sent[0]
    deadline = time.monotonic() + 90
    while [s.samples for s in monitor.stats.status] != [total] and time.monotonic() < deadline:
        time.sleep(0.2)
    lag: list[Any] = []
    groups: set[str] = set()
    with LagProbe(settings, group_prefix="riverops-t-") as probe:
        while time.monotonic() < deadline:
            rows = probe.sample()  # empty while a coordinator is still loading: not "drained"
            lag, groups = [row for row in rows if row.lag], {row.group for row in rows}
            if len(groups) == 3 and not lag:
                break
            time.sleep(0.5)
    for running in (scorer, joiner, monitor):
        assert running.thread.is_alive() and not running.errors, running.errors

    predictions = read_topic(settings, "predictions", "PredictionEvent", expected=total, settle=1)
    feedback = read_topic(settings, "feedback", "FeedbackEvent", expected=total, settle=1)
    everything = {f"e{i}" for i in range(total)}
    assert {p["event_id"] for p in predictions} == everything, "a feature was not scored"
    assert {f["event_id"] for f in feedback} == everything, "a label was not joined"
    (status,) = monitor.stats.status
    assert status.samples == total
    assert len(groups) == 3 and lag == [], f"lag did not drain: {lag} (groups seen: {groups})"
    print(f"\nfreeze {FREEZE_FOR:.0f}s at {FREEZE_AT:.0f}s of a {RATE}/s stream ({total} events); "
          f"backlog at resume {backlog}; first output {first_output}s after SIGCONT; "
          f"backlog joined and monitored {caught_up}s after SIGCONT; predictions {len(predictions)} "
          f"(re-scored {len(predictions) - total}), feedback {len(feedback)} "
          f"(repeated {len(feedback) - total}), monitor duplicates dropped {monitor.stats.duplicates}; "
          f"run {time.monotonic() - started:.0f}s")
