"""How riverops is deployed with docker-compose: service names, ports and environment.

docker-compose.yml and deploy/prometheus/prometheus.yml are written by hand; a unit test
checks that they agree with these constants and with :class:`~riverops.settings.Settings`.
"""

from __future__ import annotations

from typing import Literal, get_args

from riverops.settings import Settings

__all__ = [
    "WorkerRole",
    "WORKER_ROLES",
    "WORKER_SERVICES",
    "KAFKA_SERVICE",
    "KAFKA_INTERNAL_PORT",
    "KAFKA_EXTERNAL_PORT",
    "METRICS_PORT",
    "PROMETHEUS_PORT",
    "GRAFANA_PORT",
    "worker_environment",
]

WorkerRole = Literal["scorer", "joiner", "monitor", "learner", "retrainer", "lag"]
WORKER_ROLES: tuple[WorkerRole, ...] = get_args(WorkerRole)
WORKER_SERVICES: dict[str, tuple[WorkerRole, ...]] = {
    "scorer": ("scorer",), "joiner": ("joiner",), "monitor": ("monitor",),
    "trainer": ("learner", "retrainer"), "lag": ("lag",),
}
"""docker-compose service -> the roles its one process runs. The learner and the retrainer
share a process: both register versions, and only in one process do they take turns
choosing version numbers (:func:`riverops.kafka.registry_topic.choosing_version`)."""

KAFKA_SERVICE = "kafka"
KAFKA_INTERNAL_PORT = 29092  # the listener other containers use
KAFKA_EXTERNAL_PORT = 9092  # published on the host, where Settings points by default
METRICS_PORT: int = Settings.model_fields["metrics_port"].default
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000


def worker_environment() -> dict[str, str]:
    """The RIVEROPS_* variables every worker container gets (secrets come from .env)."""
    return {
        "RIVEROPS_BOOTSTRAP_SERVERS": f"{KAFKA_SERVICE}:{KAFKA_INTERNAL_PORT}",
        "RIVEROPS_METRICS_HOST": "0.0.0.0",
        "RIVEROPS_METRICS_PORT": str(METRICS_PORT),
        "RIVEROPS_ARTIFACT_DIR": "/artifacts",
        "RIVEROPS_SIGNING_KEY": "${RIVEROPS_SIGNING_KEY:?set RIVEROPS_SIGNING_KEY in .env}",
    }
