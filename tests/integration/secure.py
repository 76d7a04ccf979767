"""A secured Apache Kafka for the TLS, SASL and ACL tests: an SSL listener that requires
client certificates, a SASL_SSL listener with one SCRAM-SHA-512 user per role, and the
StandardAuthorizer holding exactly the bindings ``riverops acls --apply`` creates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from riverops.cli.main import cli
from riverops.kafka.cluster import BrokerTls, KafkaCluster
from riverops.settings import Settings

from ..conftest import broker_dir
from .tlscerts import TlsFiles, make_tls

__all__ = ["SecureKafka", "start_secure_kafka", "USERS"]

# one SCRAM user per principal; "trainer" runs the learner and the retrainer in one process
USERS = ("scorer", "joiner", "monitor", "trainer", "online", "lag", "service", "operator")
GROUP_PREFIX = "sec"


def password(user: str) -> str:
    return f"{user}-secret"


@dataclass
class SecureKafka:
    cluster: KafkaCluster
    tls: TlsFiles
    topic_prefix: str

    def settings(self, user: str, *, via: str = "SASL_SSL", secret: str | None = None,
                 **extra: Any) -> Settings:
        """Settings of principal ``user``: SCRAM over SASL_SSL, or its certificate over SSL."""
        common: dict[str, Any] = {
            "bootstrap_servers": self.cluster.bootstrap(via),  # type: ignore[arg-type]
            "topic_prefix": self.topic_prefix, "partitions": 2, "session_timeout_ms": 6000,
            "security_protocol": via, "ssl_ca_location": self.tls.ca, **extra,
        }
        if via == "SSL":
            cert, key = self.tls.clients[user]
            return Settings(**common, ssl_certificate_location=cert, ssl_key_location=key)
        return Settings(**common, sasl_mechanism="SCRAM-SHA-512", sasl_username=user,
                        sasl_password=secret or password(user))

    def role(self, user: str, prefix: str, work_dir: Path, **extra: Any) -> Settings:
        """``settings(user)`` on topic ``prefix``, with a signing key and directories under
        ``work_dir``: what a worker of that principal runs with."""
        return self.settings(user, topic_prefix=prefix, signing_key="secure-test-key",
                             artifact_dir=work_dir / "artifacts", state_dir=work_dir / "state" / user,
                             joiner={"checkpoint_seconds": 0.5}, **extra)

    def new_prefix(self) -> str:
        """A fresh topic prefix with every role's ACLs applied to it."""
        prefix = f"sec-{uuid.uuid4().hex[:8]}."
        apply_role_acls(self.cluster.bootstrap_servers, prefix)
        return prefix

    def admin_settings(self) -> Settings:
        """The loopback PLAINTEXT listener: the cluster's super user (test setup only)."""
        return Settings(bootstrap_servers=self.cluster.bootstrap_servers, topic_prefix=self.topic_prefix)


def apply_role_acls(admin_bootstrap: str, prefix: str) -> None:
    """``riverops acls --apply`` for every role under its own name, and the learner's and
    the retrainer's under one principal, ``trainer`` (the two run in one process)."""
    _acls(admin_bootstrap, prefix)
    _acls(admin_bootstrap, prefix, "--role", "learner", "--role", "retrainer", "--principal", "User:trainer")


def _acls(admin_bootstrap: str, prefix: str, *args: str) -> None:
    result = CliRunner().invoke(cli, ["-b", admin_bootstrap, "--topic-prefix", prefix, "acls",
                                      "--group-prefix", GROUP_PREFIX, "--apply", *args])
    assert result.exit_code == 0, (result.output, result.exception)


def start_secure_kafka(directory: Path) -> SecureKafka:
    tls = make_tls(directory / "tls", clients=USERS)
    cluster = KafkaCluster(data_dir=broker_dir(directory), tls=BrokerTls(tls.ca, tls.cert, tls.key),
                           authorizer=True).start()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                            password(user).encode()) for user in USERS]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(30)
    secured = SecureKafka(cluster, tls, "")
    secured.topic_prefix = secured.new_prefix()
    return secured
