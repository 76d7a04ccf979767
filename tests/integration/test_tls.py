"""TLS, mTLS and SASL/SCRAM on Apache Kafka's own listeners (no terminator in between):
every role configured only with the variables of docs/security.md round-trips events, and
a client that cannot prove who it is gets nothing: plaintext on a TLS port, a TLS client
that does not trust the CA, a client without a certificate on the mTLS listener, a wrong
SCRAM password; a worker with a wrong password exits 1 with a line saying why."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from river.datasets import synth

from riverops.kafka.lag import LagProbe
from riverops.kafka.producer import EventProducer

from .champion import register_champion
from .conftest import read_topic
from .procs import run_worker_to_exit, settings_env, start_worker_process, stop_process
from .secure import GROUP_PREFIX, SecureKafka

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
N = 1000


def test_clients_that_cannot_prove_who_they_are_get_nothing(secure_kafka: SecureKafka) -> None:
    tls, cluster = secure_kafka.tls, secure_kafka.cluster
    for user, via in (("scorer", "SSL"), ("scorer", "SASL_SSL")):  # the controls
        settings = secure_kafka.settings(user, via=via)
        assert AdminClient(settings.kafka_config()).list_topics(timeout=10).brokers
    ssl, sasl = cluster.bootstrap("SSL"), cluster.bootstrap("SASL_SSL")
    scram = {"security.protocol": "SASL_SSL", "ssl.ca.location": str(tls.ca), "sasl.mechanism": "SCRAM-SHA-512",
             "sasl.username": "scorer"}
    cert, key = tls.clients["scorer"]
    refused = {
        "plaintext on the TLS port": (ssl, {"security.protocol": "PLAINTEXT"}),
        "TLS trusting only the system CAs": (ssl, {"security.protocol": "SSL", "ssl.certificate.location": str(cert),
                                                   "ssl.key.location": str(key)}),
        "TLS without a client certificate": (ssl, {"security.protocol": "SSL", "ssl.ca.location": str(tls.ca)}),
        "a wrong SCRAM password": (sasl, {**scram, "sasl.password": "wrong"}),
        "SCRAM of an unknown user": (sasl, {**scram, "sasl.username": "mallory", "sasl.password": "x"}),
    }
    for what, (bootstrap, config) in refused.items():
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **config})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=4)
            pytest.fail(f"{what} was let in")


def test_a_worker_with_a_wrong_password_exits_1_saying_why(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    prefix = secure_kafka.new_prefix()
    settings = secure_kafka.role("monitor", prefix, tmp_path, secret="not-the-password")
    code, text = run_worker_to_exit(settings, "monitor", group_prefix=GROUP_PREFIX, log=tmp_path / "monitor.log")
    assert code == 1, text[-3000:]
    assert "monitor failed: AuthorizationError: the broker refused" in text, text[-3000:]
    assert "Authentication failed" in text or "authentication" in text.lower(), text[-3000:]


def test_topics_and_a_score_join_monitor_round_trip_over_tls(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    prefix = secure_kafka.new_prefix()
    operator = secure_kafka.role("operator", prefix, tmp_path)
    env = settings_env(operator)
    assert env["RIVEROPS_SECURITY_PROTOCOL"] == "SASL_SSL" and env["RIVEROPS_SSL_CA_LOCATION"] == str(
        secure_kafka.tls.ca)
    created = subprocess.run([sys.executable, "-c", "from riverops.cli.main import main; main()", "topics", "create"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr[-2000:]
    register_champion(operator)

    log = tmp_path / "workers.log"
    users = {"scorer": secure_kafka.role("scorer", prefix, tmp_path, via="SSL"),  # mTLS
             "joiner": secure_kafka.role("joiner", prefix, tmp_path),
             "monitor": secure_kafka.role("monitor", prefix, tmp_path)}
    workers = {role: start_worker_process(settings, role, group_prefix=GROUP_PREFIX, log=log)
               for role, settings in users.items()}
    try:
        t0 = datetime(2026, 11, 1, tzinfo=UTC)
        with EventProducer(secure_kafka.role("service", prefix, tmp_path)) as producer:
            for i, (x, y) in enumerate(synth.Agrawal(classification_function=0, seed=5).take(N)):
                producer.send_features(event_id=f"e{i}", model="fraud", entity_id="c", features=x,
                                       event_time=t0 + timedelta(seconds=i))
                producer.send_label(event_id=f"e{i}", model="fraud", label=bool(y),
                                    label_time=t0 + timedelta(seconds=i + 1))
        feedback = read_topic(operator, "feedback", "FeedbackEvent", expected=N, timeout=90, group_prefix=GROUP_PREFIX)
        deadline, samples = time.monotonic() + 40, 0
        while samples != N and time.monotonic() < deadline:
            metrics = read_topic(operator, "metrics", "MetricsEvent", expected=10**9, timeout=8, settle=0, group_prefix=GROUP_PREFIX)
            samples = max((m["samples"] for m in metrics
                           if m["window_kind"] == "count" and m["variant"] == "champion"), default=0)
        with LagProbe(secure_kafka.role("lag", prefix, tmp_path), group_prefix=GROUP_PREFIX) as probe:
            rows = probe.sample()
        for role, process in workers.items():
            assert process.poll() is None, f"{role} exited: {log.read_text()[-3000:]}"
    finally:
        codes = {role: stop_process(process) for role, process in workers.items()}
    assert codes == {"scorer": 0, "joiner": 0, "monitor": 0}, log.read_text()[-3000:]
    assert sorted(f["event_id"] for f in feedback) == sorted(f"e{i}" for i in range(N))
    assert samples == N
    assert {row.group for row in rows} >= {f"{GROUP_PREFIX}-{role}" for role in workers}
