"""The TLS settings of docs/security.md reach librdkafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from riverops.settings import Settings


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
