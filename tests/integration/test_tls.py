"""Every role over TLS, configured only with the variables of docs/security.md, against an
embedded broker that listens with a certificate made here; a plaintext client, and a TLS
client that does not trust the CA, get nothing."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from river.datasets import synth

from streams.broker import EmbeddedBroker
from streams.lag import LagProbe
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import TOPIC_ROLES, TopicCatalogue

from .champion import register_champion
from .conftest import read_topic
from .procs import settings_env, start_worker_process, stop_process
from .tlscerts import TlsFiles, make_tls

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
N = 1000


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path / "tls")


@pytest.fixture
def tls_broker(tls: TlsFiles, tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(cert=tls.cert, key=tls.key, log_path=tmp_path / "broker.log") as broker:
        yield broker


def test_plaintext_and_untrusting_clients_get_nothing(tls_broker: EmbeddedBroker, tls: TlsFiles) -> None:
    trusted = Settings(bootstrap_servers=tls_broker.bootstrap_servers, security_protocol="SSL",
                       ssl_ca_location=tls.ca)
    assert AdminClient(trusted.kafka_config()).list_topics(timeout=10).brokers  # the control
    for config in (
        {"security.protocol": "PLAINTEXT"},
        {"security.protocol": "SSL"},  # the system CAs do not know ours
        {"security.protocol": "SSL", "ssl.ca.location": str(tls.cert)},  # not the CA
    ):
        admin = AdminClient({"bootstrap.servers": tls_broker.bootstrap_servers, "log_level": 0, **config})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=4)


def test_topics_and_a_score_join_monitor_round_trip_over_tls(
    tls_broker: EmbeddedBroker, tls: TlsFiles, tmp_path: Path
) -> None:
    settings = Settings(
        bootstrap_servers=tls_broker.bootstrap_servers, topic_prefix=f"t-{uuid.uuid4().hex[:8]}.",
        partitions=2, session_timeout_ms=6000, security_protocol="SSL", ssl_ca_location=tls.ca,
        signing_key="tls-test-key", artifact_dir=tmp_path / "artifacts",  # type: ignore[arg-type]
        state_dir=tmp_path / "state", checkpoint_seconds=0.5,
    )
    env = settings_env(settings)
    assert env["RIVEROPS_SECURITY_PROTOCOL"] == "SSL" and env["RIVEROPS_SSL_CA_LOCATION"] == str(tls.ca)
    created = subprocess.run([sys.executable, "-c", "from streams.cli import main; main()", "topics", "create"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr[-2000:]
    topics = AdminClient(settings.kafka_config()).list_topics(timeout=10).topics
    catalogue = TopicCatalogue.from_settings(settings)
    assert {catalogue.name(role) for role in TOPIC_ROLES} <= set(topics)

    register_champion(settings)
    prefix = f"tls-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "workers.log"
    workers = {role: start_worker_process(settings, role, group_prefix=prefix, log=log)
               for role in ("scorer", "joiner", "monitor")}
    try:
        t0 = datetime(2026, 11, 1, tzinfo=UTC)
        with EventProducer(settings) as producer:
            for i, (x, y) in enumerate(synth.Agrawal(classification_function=0, seed=5).take(N)):
                producer.send_features(event_id=f"e{i}", model="fraud", entity_id="c", features=x,
                                       event_time=t0 + timedelta(seconds=i))
                producer.send_label(event_id=f"e{i}", model="fraud", label=bool(y),
                                    label_time=t0 + timedelta(seconds=i + 1))
        feedback = read_topic(settings, "feedback", "FeedbackEvent", expected=N, timeout=90)
        # the monitor's count: the last count-window metrics of the champion say N samples
        deadline, samples = time.monotonic() + 40, 0
        while samples != N and time.monotonic() < deadline:
            metrics = read_topic(settings, "metrics", "MetricsEvent", expected=10**9, timeout=8, settle=0)
            samples = max((m["samples"] for m in metrics
                           if m["window_kind"] == "count" and m["variant"] == "champion"), default=0)
        with LagProbe(settings, group_prefix=prefix) as probe:  # the lag role's clients
            rows = probe.sample()
        for role, process in workers.items():
            assert process.poll() is None, f"{role} exited: {log.read_text()[-3000:]}"
    finally:
        codes = {role: stop_process(process) for role, process in workers.items()}
    assert codes == {"scorer": 0, "joiner": 0, "monitor": 0}, log.read_text()[-3000:]
    assert sorted(f["event_id"] for f in feedback) == sorted(f"e{i}" for i in range(N))
    assert samples == N
    assert {row.group for row in rows} == {f"{prefix}-{role}" for role in workers}
