"""How riverops is deployed with docker-compose: services, ports, volumes, environment, health.

docker-compose.yml, the Dockerfile and deploy/prometheus/prometheus.yml are written by
hand; a unit test checks that they agree with these constants and with
:class:`~riverops.settings.Settings`. :func:`healthcheck` is what each worker container
runs as its healthcheck (``python -m riverops.deployment ROLE...``): the worker is healthy
when its /metrics answers and every role it runs that reads through a consumer group has
joined its group (``riverops_assigned_partitions`` is set on each assignment; 0 partitions
is a standby, still healthy). A role that failed stops the whole process, so liveness
needs nothing more.

Examples
--------
>>> metrics = 'riverops_assigned_partitions{role="scorer"} 2.0\\n'
>>> problems(metrics, ["scorer", "lag"]), problems(metrics, ["joiner"])
([], ['joiner has not joined its consumer group yet'])
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Literal, get_args

from prometheus_client.parser import text_string_to_metric_families

from riverops.settings import Settings

__all__ = [
    "WorkerRole",
    "WORKER_ROLES",
    "GROUP_ROLES",
    "WORKER_SERVICES",
    "WORKER_VOLUMES",
    "CONTAINER_USER",
    "CONTAINER_UID",
    "KAFKA_SERVICE",
    "KAFKA_INTERNAL_PORT",
    "KAFKA_EXTERNAL_PORT",
    "KAFKA_VOLUME",
    "KAFKA_DATA_DIR",
    "METRICS_PORT",
    "PROMETHEUS_PORT",
    "GRAFANA_PORT",
    "worker_environment",
    "problems",
    "healthcheck",
    "main",
]

WorkerRole = Literal["scorer", "joiner", "monitor", "learner", "retrainer", "lag"]
WORKER_ROLES: tuple[WorkerRole, ...] = get_args(WorkerRole)
GROUP_ROLES: tuple[WorkerRole, ...] = tuple(r for r in WORKER_ROLES if r != "lag")
"""The roles that read through a consumer group (the lag role only reads watermarks and
offsets, so it has no assignment to wait for)."""
WORKER_SERVICES: dict[str, tuple[WorkerRole, ...]] = {
    "scorer": ("scorer",), "joiner": ("joiner",), "monitor": ("monitor",),
    "trainer": ("learner", "retrainer"), "lag": ("lag",),
}
"""docker-compose service -> the roles its one process runs. The learner and the retrainer
share one (both train models); they may run apart: registry writers in separate processes
are fenced, not raced (:func:`riverops.kafka.registry_topic.publish_change`)."""

WORKER_VOLUMES = {"artifacts": "/artifacts", "state": "/state"}
"""Named volume -> mount point in every worker: the artifact store (models too big for a
registry record) and the local checkpoints (the joiner's snapshots, the learner's resume
files; each under its group's name, so the services share one volume). The Dockerfile
creates both directories owned by the container user, and an empty named volume takes
the ownership of the directory it is mounted on, so the workers can write to them."""
CONTAINER_USER = "riverops"
CONTAINER_UID = 10001

KAFKA_SERVICE = "kafka"
KAFKA_INTERNAL_PORT = 29092  # the listener other containers use
KAFKA_EXTERNAL_PORT = 9092  # published on the host, where Settings points by default
KAFKA_VOLUME = "kafka-data"
KAFKA_DATA_DIR = "/var/lib/kafka/data"
"""Where the broker keeps its logs (and with them the model registry topic): the
apache/kafka image creates this directory for its user but writes to
/tmp/kraft-combined-logs unless KAFKA_LOG_DIRS names it."""
METRICS_PORT: int = Settings.model_fields["metrics_port"].default
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000


def worker_environment() -> dict[str, str]:
    """The RIVEROPS_* variables every worker container gets (secrets come from .env)."""
    return {
        "RIVEROPS_BOOTSTRAP_SERVERS": f"{KAFKA_SERVICE}:{KAFKA_INTERNAL_PORT}",
        "RIVEROPS_METRICS_HOST": "0.0.0.0",
        "RIVEROPS_METRICS_PORT": str(METRICS_PORT),
        "RIVEROPS_ARTIFACT_DIR": WORKER_VOLUMES["artifacts"],
        "RIVEROPS_STATE_DIR": WORKER_VOLUMES["state"],
        "RIVEROPS_SIGNING_KEY": "${RIVEROPS_SIGNING_KEY:?set RIVEROPS_SIGNING_KEY in .env}",
    }


def problems(metrics_text: str, roles: Sequence[str]) -> list[str]:
    """Why a worker running ``roles`` is not healthy, from its /metrics text (empty: it is)."""
    joined = {
        sample.labels.get("role")
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "riverops_assigned_partitions"
    }
    return [f"{role} has not joined its consumer group yet" for role in roles
            if role in GROUP_ROLES and role not in joined]  # fmt: skip


def healthcheck(roles: Sequence[str], *, url: str, timeout: float = 3.0) -> list[str]:
    """:func:`problems` of the worker serving /metrics at ``url`` (unreachable is one)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return [f"{url} does not answer: {exc}"]
    return problems(text, roles)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m riverops.deployment ROLE...``: 0 when healthy, else 1 with the reasons on
    stderr (the port is the settings' metrics port, from RIVEROPS_METRICS_PORT)."""
    roles = list(sys.argv[1:] if argv is None else argv)
    unknown = [r for r in roles if r not in WORKER_ROLES]
    if not roles or unknown:
        print(f"usage: python -m riverops.deployment ROLE... (roles: {', '.join(WORKER_ROLES)}; "
              f"unknown: {', '.join(unknown) or 'none given'})", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{Settings().metrics_port}/metrics"
    found = healthcheck(roles, url=url)
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
