"""The TLS settings of docs/security.md reach librdkafka, and the embedded broker's TLS
mode is a plaintext Tansu on a private port behind the TLS terminator."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings


def test_ssl_settings_from_the_environment_build_the_librdkafka_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVEROPS_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("RIVEROPS_SSL_CA_LOCATION", "/etc/riverops/ca.pem")
    monkeypatch.setenv("RIVEROPS_SSL_CERTIFICATE_LOCATION", "/etc/riverops/client.pem")
    monkeypatch.setenv("RIVEROPS_SSL_KEY_LOCATION", "/etc/riverops/client.key")
    monkeypatch.setenv("RIVEROPS_SSL_KEY_PASSWORD", "pw")
    config = Settings().kafka_config()
    assert config["security.protocol"] == "SSL"
    assert config["ssl.ca.location"] == "/etc/riverops/ca.pem"
    assert config["ssl.certificate.location"] == "/etc/riverops/client.pem"
    assert config["ssl.key.location"] == "/etc/riverops/client.key"
    assert config["ssl.key.password"] == "pw"
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert not any(name.startswith("sasl.") for name in config)
    monkeypatch.setenv("RIVEROPS_SSL_CHECK_HOSTNAME", "false")
    assert Settings().kafka_config()["ssl.endpoint.identification.algorithm"] == "none"


def test_plaintext_config_has_no_ssl_keys() -> None:
    config = Settings(ssl_ca_location=Path("/ca.pem")).kafka_config()
    assert config["security.protocol"] == "PLAINTEXT"
    assert not any(name.startswith("ssl.") for name in config)


def test_tls_broker_runs_tansu_privately_and_advertises_the_tls_port(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=19999, cert=tmp_path / "c.pem", key=tmp_path / "k.pem", binary="tansu")
    command = broker.command()
    assert command[command.index("--listener-url") + 1] == f"tcp://127.0.0.1:{broker.internal_port}"
    assert command[command.index("--advertised-listener-url") + 1] == "tcp://127.0.0.1:19999"
    assert "--cert" not in command  # this Tansu build refuses --cert with --key
    proxy = broker.proxy_command()
    assert proxy[proxy.index("--listen") + 1] == "127.0.0.1:19999"
    assert proxy[proxy.index("--upstream") + 1] == f"127.0.0.1:{broker.internal_port}"
    plain = EmbeddedBroker(port=19998, binary="tansu").command()
    assert plain[plain.index("--listener-url") + 1] == "tcp://127.0.0.1:19998"
