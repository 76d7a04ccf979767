"""The one settings object of riverops, read from ``RIVEROPS_*`` environment variables.

No other module reads the environment: commands build a :class:`Settings` once and pass
it down. ``kafka_config()`` is the single place that turns it into a librdkafka config.

Examples
--------
>>> s = Settings(bootstrap_servers="127.0.0.1:9092", topic_prefix="t.")
>>> s.kafka_config()["bootstrap.servers"]
'127.0.0.1:9092'
>>> Settings(sasl_password="hunter2").sasl_password
SecretStr('**********')
>>> Settings(retrainer={"degradation_below": 0.8}).retrainer.degradation_below
0.8
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from riverops.schemas.codec import Codec, Encoding, make_codec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.errors import ConfigError
from riverops.sections import (
    JoinerSettings,
    LagSettings,
    LearnerSettings,
    MonitorSettings,
    OnlineSettings,
    RetrainerSettings,
    ScorerSettings,
)

__all__ = ["Settings", "SecurityProtocol", "SaslMechanism", "ProcessingGuarantee"]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ProcessingGuarantee = Literal["exactly_once", "at_least_once"]


class Settings(BaseSettings):
    """Everything a riverops process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="RIVEROPS_", env_nested_delimiter="__", frozen=True, extra="forbid",
        populate_by_name=True,
    )

    # --- Kafka connection ---------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "bootstrap_servers", "RIVEROPS_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Kafka bootstrap servers, host:port[,host:port]",
    )
    client_id: str = Field("riverops", description="client.id of every Kafka client (broker "
                           "logs, quotas)")
    security_protocol: SecurityProtocol = Field("PLAINTEXT", description="how clients talk to "
                                                "the brokers (docs/security.md)")
    sasl_mechanism: SaslMechanism | None = Field(None, description="needed by SASL_*")
    sasl_username: str | None = Field(None, description="needed by SASL_*")
    sasl_password: SecretStr | None = Field(None, description="needed by SASL_*")
    ssl_ca_location: Path | None = Field(None, description="CA file that signed the brokers' "
                                         "certificates (SSL, SASL_SSL)")
    ssl_certificate_location: Path | None = Field(None, description="client certificate, for mTLS")
    ssl_key_location: Path | None = Field(None, description="client key, for mTLS")
    ssl_key_password: SecretStr | None = Field(None, description="password of the client key")
    ssl_check_hostname: bool = Field(True, description="verify the broker's host name against "
                                     "its certificate")
    session_timeout_ms: int = Field(10_000, ge=1_000, description="consumer group session timeout")

    # --- topics and encoding -------------------------------------------------------
    topic_prefix: str = Field("riverops.", pattern=r"^[A-Za-z0-9._\-]*$",
                              description="prefix of every topic name")
    partitions: int = Field(4, ge=1, description="partitions of the event topics")
    replication_factor: int = Field(1, ge=1, description="replication of every topic")
    encoding: Encoding = Field("single-object", description="Avro single-object encoding, or "
                               "confluent (Schema Registry wire format)")
    schema_registry_url: str | None = Field(None, description="for the confluent encoding")
    schema_registry_basic_auth: SecretStr | None = Field(None, description="user:password")
    feature_schemas: Path | None = Field(None, description="folder of typed feature schemas "
                                         "(MODEL.avsc, earlier versions in previous/): those "
                                         "models' features are written as typed records, ~3x "
                                         "cheaper to decode than the generic map")

    # --- models ----------------------------------------------------------------------
    artifact_dir: Path = Field(Path("artifacts"), description="where model artifacts too large "
                               "to travel inline in the registry are stored")
    signing_key: SecretStr | None = Field(None, description="HMAC key that signs and checks model "
                                          "artifacts")
    registry_keep_artifacts: int = Field(3, ge=1, description="a worker's registry holds the "
                                         "artifact bytes of served versions and of the last N "
                                         "candidates of each writer and former champions of each "
                                         "model; of the others only their metadata")

    # --- processing --------------------------------------------------------------------
    state_dir: Path = Field(Path("state"), description="local checkpoints of stateful workers")
    batch_size: int = Field(1000, ge=1, description="most records a worker consumes at once")
    consumer_queue_kbytes: int = Field(16_384, ge=1, le=2_097_151, description="most KB of records "
                                       "each consumer prefetches ahead of its worker (librdkafka's "
                                       "queued.max.messages.kbytes, 65536 by default): what a "
                                       "lagging worker holds in RAM per consumer")
    processing_guarantee: ProcessingGuarantee = Field(
        "exactly_once", description="exactly_once: each batch's outputs, state changes and offsets "
        "in one Kafka transaction (needs Apache Kafka); at_least_once: outputs flushed, then offsets "
        "committed (the embedded broker, which cannot do transactions)")
    transaction_timeout_ms: int = Field(30_000, ge=1_000, description="how long the broker keeps "
                                        "a dead worker's open transaction before aborting it (also "
                                        "the longest broker outage a transaction outlives)")
    group_prefix: str = Field("riverops", pattern=r"^[A-Za-z0-9._\-]+$", description="consumer "
                              "groups are named PREFIX-ROLE; the lag role watches PREFIX*")

    # --- roles (RIVEROPS_<ROLE>__<KNOB>, see riverops.sections) ---------------------------
    scorer: ScorerSettings = ScorerSettings()
    joiner: JoinerSettings = JoinerSettings()
    monitor: MonitorSettings = MonitorSettings()
    learner: LearnerSettings = LearnerSettings()
    retrainer: RetrainerSettings = RetrainerSettings()
    online: OnlineSettings = OnlineSettings()
    lag: LagSettings = LagSettings()

    # --- observability ----------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="address of the Prometheus /metrics endpoint")
    metrics_port: int = Field(9464, ge=0, le=65535, description="port of the Prometheus /metrics "
                              "endpoint")

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ConfigError(
                f"security_protocol={self.security_protocol} needs RIVEROPS_SASL_MECHANISM, "
                "RIVEROPS_SASL_USERNAME and RIVEROPS_SASL_PASSWORD"
            )
        if self.encoding == "confluent" and not self.schema_registry_url:
            raise ConfigError("RIVEROPS_ENCODING=confluent needs RIVEROPS_SCHEMA_REGISTRY_URL")
        return self

    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration shared by every client, plus ``overrides``.

        Overrides use librdkafka's dotted names, so pass them as a dict:
        ``s.kafka_config(**{"group.id": "g"})``.
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
            # idle connections closed by the broker are normal, not worth a log line
            "log.connection.close": False,
        }
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked by the validator
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            if self.ssl_ca_location:
                config["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location:
                config["ssl.certificate.location"] = str(self.ssl_certificate_location)
            if self.ssl_key_location:
                config["ssl.key.location"] = str(self.ssl_key_location)
            if self.ssl_key_password:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            config["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        config.update(overrides)
        return config

    def codec(self) -> Codec:
        """The event codec these settings ask for."""
        registry_config: dict[str, Any] = {}
        if self.schema_registry_basic_auth:
            registry_config["basic.auth.user.info"] = (
                self.schema_registry_basic_auth.get_secret_value()
            )
        store = SchemaStore.bundled()
        if self.feature_schemas is not None:
            store = store.with_feature_folder(self.feature_schemas)
        return make_codec(self.encoding, registry_url=self.schema_registry_url,
                          registry_config=registry_config, store=store)

    def signing_key_bytes(self) -> bytes:
        """The artifact signing key; a clear error when it is not set."""
        if self.signing_key is None or not self.signing_key.get_secret_value():
            raise ConfigError(
                "RIVEROPS_SIGNING_KEY is not set: model artifacts are signed and checked with it "
                "(e.g. export RIVEROPS_SIGNING_KEY=$(openssl rand -hex 32))"
            )
        return self.signing_key.get_secret_value().encode()

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-ready values, secrets masked."""
        return self.model_dump(mode="json")
