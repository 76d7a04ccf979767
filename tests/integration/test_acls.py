"""The ACL matrix on Apache Kafka with the StandardAuthorizer: every role works with only the
bindings `riverops acls` gives it, and for each role an action outside them is refused by
the broker and reported as an AuthorizationError (a worker stops with exit status 1 and a
log line saying so), never retried silently."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from river.datasets import synth

from riverops.cli.main import cli
from riverops.kafka.clients import make_consumer, ok
from riverops.kafka.lag import LagProbe
from riverops.kafka.outbox import Outbox
from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records, read_registry
from riverops.kafka.topics import TopicCatalogue
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.roles.learner import LearnerStats, run_learner
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.roles.online import OnlineStats, run_online
from riverops.roles.retrainer import RetrainerStats, request_retrain, run_retrainer
from riverops.roles.scorer import ScorerStats, run_scorer
from riverops.schemas.errors import AuthorizationError
from riverops.sections import DataDriftSettings, LearnerSettings, MonitorSettings, RetrainerSettings
from riverops.settings import Settings

from .champion import register_champion
from .conftest import read_topic
from .procs import run_worker_to_exit, settings_env
from .secure import GROUP_PREFIX, SecureKafka

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
N = 1500
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


def _operator_sets_up(secure: SecureKafka, prefix: str, tmp_path: Path) -> Settings:
    """`riverops topics create` and a first champion, as the operator principal."""
    operator = secure.role("operator", prefix, tmp_path)
    env = {k: v for k, v in settings_env(operator).items() if k.startswith("RIVEROPS_")}
    created = CliRunner(env=env).invoke(cli, ["topics", "create"])
    assert created.exit_code == 0, (created.output, created.exception)
    assert "created 9" in created.output
    register_champion(operator)
    return operator


def _send(service: Settings, count: int, *, offset: int = 0) -> None:
    rows = synth.Agrawal(classification_function=0, seed=3).take(count)
    with EventProducer(service) as producer:
        for i, (x, y) in enumerate(rows, start=offset):
            when = T0 + timedelta(seconds=i)
            producer.send_features(event_id=f"e{i}", model="fraud", entity_id="c", features=x, event_time=when)
            producer.send_label(event_id=f"e{i}", model="fraud", label=bool(y), label_time=when + timedelta(seconds=1))


def test_every_role_works_with_only_its_acls(secure_kafka: SecureKafka, tmp_path: Path,
                                             start_worker: Any) -> None:
    prefix = secure_kafka.new_prefix()
    operator = _operator_sets_up(secure_kafka, prefix, tmp_path)

    def role(user: str, **extra: Any) -> Settings:
        return secure_kafka.role(user, prefix, tmp_path, **extra)

    group = GROUP_PREFIX
    # the scorer proves who it is with its client certificate (mTLS), the others with SCRAM
    scorer = start_worker(run_scorer, role("scorer", via="SSL"), ScorerStats(), group_id=f"{group}-scorer")
    joiner = start_worker(run_joiner, role("joiner"), JoinerStats(), group_id=f"{group}-joiner")
    monitoring = MonitorSettings(emit_seconds=0.5, window_size=10**6, time_window=10**9,
                                 data_drift=DataDriftSettings(enabled=False))
    monitor = start_worker(run_monitor, role("monitor").model_copy(update={"monitor": monitoring}),
                           MonitorStats(), group_id=f"{group}-monitor")
    trainer = role("trainer")
    learner = start_worker(run_learner, trainer.model_copy(update={"learner": LearnerSettings(every_samples=500)}),
                           LearnerStats(), group_id=f"{group}-learner")
    retrainer = start_worker(run_retrainer, trainer.model_copy(update={"retrainer": RetrainerSettings(
        cooldown_seconds=0.0)}), RetrainerStats(), group_id=f"{group}-retrainer")
    _send(role("service"), N)

    assert _wait(lambda: joiner.stats.feedback >= N and monitor.stats.feedback >= N, 120), (
        scorer.stats, joiner.stats, monitor.stats)
    assert _wait(lambda: learner.stats.snapshots >= 1, 60), learner.stats
    request_retrain(operator, "fraud", reason="manual", by="acl-test")
    assert _wait(lambda: retrainer.stats.retrains >= 1, 90), retrainer.stats
    with LagProbe(role("lag"), group_prefix=group) as probe:
        rows = probe.sample()
    for running in (scorer, joiner, monitor, learner, retrainer):
        assert running.thread.is_alive() and not running.errors, (running.name, running.errors)

    feedback = read_topic(operator, "feedback", "FeedbackEvent", expected=N, settle=0.5, group_prefix=GROUP_PREFIX)
    assert sorted({f["event_id"] for f in feedback}) == sorted(f"e{i}" for i in range(N))
    metrics = read_topic(operator, "metrics", "MetricsEvent", expected=10**9, timeout=5, settle=0, group_prefix=GROUP_PREFIX)
    assert any(m["window_kind"] == "count" for m in metrics)
    authors = {v.changed_by for v in read_registry(operator).versions("fraud")}
    assert {"test", "learner", "retrainer"} <= authors, authors
    assert {row.group for row in rows} >= {f"{group}-{r}" for r in ("scorer", "joiner", "monitor", "learner")}


def test_the_online_variant_works_with_its_acls(secure_kafka: SecureKafka, tmp_path: Path,
                                                start_worker: Any) -> None:
    prefix = secure_kafka.new_prefix()
    operator = _operator_sets_up(secure_kafka, prefix, tmp_path)
    online = start_worker(run_online, secure_kafka.role("online", prefix, tmp_path), OnlineStats(),
                          group_id=f"{GROUP_PREFIX}-online")
    _send(secure_kafka.role("service", prefix, tmp_path), 300)
    assert _wait(lambda: online.stats.predictions >= 300 and online.stats.learned >= 300, 90), online.stats
    predictions = read_topic(operator, "predictions", "PredictionEvent", expected=300, settle=0.5, group_prefix=GROUP_PREFIX)
    assert {p["variant"] for p in predictions} == {"online"}


def test_actions_outside_a_roles_acls_are_refused_clearly(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    prefix = secure_kafka.new_prefix()
    operator = _operator_sets_up(secure_kafka, prefix, tmp_path)
    catalogue = TopicCatalogue.from_settings(operator)

    # the scorer writing the registry topic
    (champion,) = read_registry(operator).versions("fraud")
    with pytest.raises(AuthorizationError, match="TOPIC_AUTHORIZATION_FAILED|Topic authorization failed"):
        publish_records(secure_kafka.role("scorer", prefix, tmp_path), [champion])

    # the monitor reading labels (in its own group)
    monitor = secure_kafka.role("monitor", prefix, tmp_path)
    consumer = make_consumer(monitor, f"{GROUP_PREFIX}-monitor")
    consumer.subscribe([catalogue.name("labels")])
    try:
        with pytest.raises(AuthorizationError, match=catalogue.name("labels")):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                for message in consumer.consume(100, 0.5):
                    ok(message)
    finally:
        consumer.close()

    # a service writing predictions
    outbox = Outbox(secure_kafka.role("service", prefix, tmp_path))
    outbox.send(catalogue.name("predictions"), "PredictionEvent", [{
        "event_id": "x", "model": "fraud", "version": 1, "variant": "champion", "prediction": True,
        "scores": {"True": 0.9}, "latency": 0.001, "event_time": T0, "predicted_at": T0}], key="event_id")
    with pytest.raises(AuthorizationError, match="writing"):
        outbox.flush("service predictions")

    # the lag role describing a group outside its prefix gets nothing, not an error loop
    with LagProbe(secure_kafka.role("lag", prefix, tmp_path), group_prefix="other") as probe:
        assert probe.sample() == []

    # no refused write reached the registry
    assert [v.version for v in read_registry(operator).versions("fraud")] == [champion.version]


@pytest.mark.parametrize(("role", "as_user"), [("scorer", "monitor"), ("joiner", "scorer"),
                                               ("monitor", "service")])
def test_a_worker_with_another_roles_credentials_stops_with_a_clear_line(
    secure_kafka: SecureKafka, tmp_path: Path, role: str, as_user: str
) -> None:
    prefix = secure_kafka.new_prefix()
    _operator_sets_up(secure_kafka, prefix, tmp_path)
    settings = secure_kafka.role(as_user, prefix, tmp_path)
    code, text = run_worker_to_exit(settings, role, group_prefix=GROUP_PREFIX, log=tmp_path / f"{role}.log")
    assert code == 1, text[-3000:]
    assert f"{role} failed: AuthorizationError: the broker refused" in text, text[-3000:]
    assert "riverops acls" in text
