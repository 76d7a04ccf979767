"""The Kafka engine says clearly what it lacks, and reads the version the pom pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverops.kafka.cluster import KafkaCluster, new_cluster_id
from riverops.kafka.jars import POM, ensure_jars, java_binary, kafka_version
from riverops.schemas.errors import BrokerError


def test_the_pom_pins_a_kafka_4_version() -> None:
    assert kafka_version(POM).startswith("4.")


def test_missing_java_and_maven_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="needs Java 17"):
        java_binary()
    with pytest.raises(BrokerError, match="needs Maven"):
        ensure_jars(tmp_path / "no-jars-here")


def test_a_directory_without_the_broker_jar_is_refused(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    with pytest.raises(BrokerError, match="no kafka_2.13 jar"):
        ensure_jars(tmp_path / "libs")


def test_a_missing_pom_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="pins the broker's version"):
        kafka_version(tmp_path / "pom.xml")


def test_three_nodes_replicate_and_need_two_in_sync(tmp_path: Path) -> None:
    cluster = KafkaCluster(nodes=3, data_dir=tmp_path)
    props = cluster.node_properties(2)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"].count("@127.0.0.1:") == 3
    assert props["default.replication.factor"] == "3" and props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert len(set(cluster.bootstrap_servers.split(","))) == 3
    single = KafkaCluster(data_dir=tmp_path / "one").node_properties(1)
    assert single["min.insync.replicas"] == "1" and single["transaction.state.log.min.isr"] == "1"
    with pytest.raises(BrokerError, match="1 or 3 nodes"):
        KafkaCluster(nodes=2)  # type: ignore[arg-type]


def test_the_benchmarks_broker_runs_with_kafkas_own_jvm_flags(tmp_path: Path) -> None:
    from riverops.kafka.cluster import JVM_FLAGS

    assert KafkaCluster(data_dir=tmp_path).jvm == "quick"  # the tests': starts fast
    assert "-XX:+UseG1GC" in JVM_FLAGS["kafka"] and "-XX:TieredStopAtLevel=1" not in JVM_FLAGS["kafka"]
    with pytest.raises(BrokerError, match="unknown JVM profile"):
        KafkaCluster(data_dir=tmp_path, jvm="fast")  # type: ignore[arg-type]


def test_tls_listeners_require_certificates_and_take_scram(tmp_path: Path) -> None:
    from riverops.kafka.cluster import BrokerTls

    cluster = KafkaCluster(data_dir=tmp_path, tls=BrokerTls(tmp_path / "ca", tmp_path / "c", tmp_path / "k"),
                           authorizer=True)
    props = cluster.node_properties(1)
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert set(props["advertised.listeners"].split(",")) == {
        f"{name}://{cluster.bootstrap(name)}" for name in ("PLAINTEXT", "SSL", "SASL_SSL")}
    with pytest.raises(BrokerError, match="needs the TLS listeners"):
        KafkaCluster(data_dir=tmp_path, authorizer=True)


def test_cluster_ids_are_16_bytes_url_safe_unpadded() -> None:
    import base64

    cid = new_cluster_id()
    assert "=" not in cid and len(base64.urlsafe_b64decode(cid + "==")) == 16
