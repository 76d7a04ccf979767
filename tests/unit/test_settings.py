"""One frozen settings object, env prefix RIVEROPS_, secrets masked, one librdkafka config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from riverops.kafka.topics import TOPIC_ROLES, TopicCatalogue
from riverops.schemas.errors import ConfigError
from riverops.settings import Settings


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVEROPS_TOPIC_PREFIX", "prod.")
    monkeypatch.setenv("RIVEROPS_PARTITIONS", "12")
    settings = Settings()
    assert settings.topic_prefix == "prod." and settings.partitions == 12


def test_kafka_bootstrap_servers_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIVEROPS_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:29092")
    assert Settings().bootstrap_servers == "kafka:29092"
    monkeypatch.setenv("RIVEROPS_BOOTSTRAP_SERVERS", "other:1")
    assert Settings().bootstrap_servers == "other:1"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.partitions = 3  # type: ignore[misc]


def test_sasl_ssl_config_and_masked_secrets() -> None:
    settings = Settings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
        sasl_password="s3cret", ssl_ca_location="/etc/ca.pem",  # type: ignore[arg-type]
    )
    config = settings.kafka_config(**{"group.id": "g"})
    assert config["sasl.password"] == "s3cret" and config["ssl.ca.location"] == "/etc/ca.pem"
    assert config["group.id"] == "g"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.redacted())


def test_sasl_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="SASL"):
        Settings(security_protocol="SASL_PLAINTEXT")


def test_confluent_encoding_needs_a_registry() -> None:
    with pytest.raises(ConfigError, match="SCHEMA_REGISTRY_URL"):
        Settings(encoding="confluent")
    assert Settings(encoding="confluent", schema_registry_url="mock://s").codec() is not None


def test_catalogue_covers_every_topic_with_the_prefix() -> None:
    catalogue = TopicCatalogue.from_settings(Settings(topic_prefix="x.", partitions=6))
    assert [spec.role for spec in catalogue] == list(TOPIC_ROLES)
    assert all(spec.name.startswith("x.") for spec in catalogue)
    joined = {catalogue.spec(r).partitions for r in ("features", "predictions", "labels")}
    assert joined == {6}
    registry = catalogue.spec("model-registry")
    assert registry.config["cleanup.policy"] == "compact" and registry.partitions == 1
