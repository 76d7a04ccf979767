"""`riverops broker --engine kafka` as a user runs it, and a three-node cluster that keeps
serving when one node dies. Apache Kafka only (the jars come from the Maven cache)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverops.cli.main import cli
from riverops.kafka.cluster import KafkaCluster
from riverops.kafka.tansu import free_port

from ..conftest import ENGINE, broker_dir

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(ENGINE != "kafka", reason="starts Apache Kafka itself: the Kafka pass runs it"),
    pytest.mark.serial,
]


def _broker_command(port: int, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from riverops.cli.main import main; main()", "broker", "--engine", "kafka",
         "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )


def _until_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    seen = ""
    while "broker ready" not in seen:
        line = process.stdout.readline()
        assert line, f"the broker command ended: {seen}"
        seen += line
    return seen


def test_broker_command_on_kafka_keeps_its_data_dir_across_restarts(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "kafka"
    args = ["-b", f"127.0.0.1:{port}", "--topic-prefix", "cli."]
    for run in range(2):
        process = _broker_command(port, data)
        try:
            out = _until_ready(process)
            assert f"(kafka) on 127.0.0.1:{port}" in out, out
            created = CliRunner().invoke(cli, [*args, "topics", "create"])
            assert created.exit_code == 0, created.output
            assert ("created 9, existing 0" if run == 0 else "created 0, existing 9") in created.output
        finally:
            process.send_signal(signal.SIGTERM)
            rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "stopping the broker" in rest
    assert (data / "node-1" / "data" / "meta.properties").exists()


def test_three_nodes_serve_on_while_one_is_killed(tmp_path: Path) -> None:
    with KafkaCluster(nodes=3, data_dir=broker_dir(tmp_path)) as cluster:
        topic = f"three-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        admin.create_topics([NewTopic(topic, 2, 3)])[topic].result(30)
        producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all",
                             "enable.idempotence": True})
        for i in range(100):
            producer.produce(topic, key=str(i), value=b"before")
        assert producer.flush(30) == 0
        cluster.stop_node(2, kill=True)
        failures: list[object] = []
        for i in range(100):
            producer.produce(topic, key=str(i), value=b"during",
                             on_delivery=lambda error, _m: failures.append(error) if error else None)
        assert producer.flush(60) == 0 and not failures, failures  # min.insync.replicas=2 of 3
        cluster.start_node(2)
        assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "three",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
        values: list[bytes] = []
        for _ in range(60):
            values += [m.value() for m in consumer.consume(500, 0.5) if m.error() is None]
            if len(values) >= 200:
                break
        consumer.close()
        assert sorted(set(values)) == [b"before", b"during"] and len(values) == 200


def test_a_cluster_id_that_starts_with_a_dash_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one id in 64 does: StorageTool once read it as an option and the start failed
    from riverops.kafka import cluster as kafka_broker

    monkeypatch.setattr(kafka_broker, "new_cluster_id", lambda: "-" + "A" * 21)
    with KafkaCluster(data_dir=broker_dir(tmp_path)) as cluster:
        assert AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(timeout=10).brokers
