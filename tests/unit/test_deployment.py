"""docker-compose.yml, prometheus.yml, the alerts and the Grafana dashboard agree with the code.

The deploy/ files are written by hand; these tests catch a renamed metric or label, a moved
port or a mount that no longer matches before a dashboard panel goes empty or an alert
silently never fires.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from riverops import deployment as dep
from riverops.kafka.jars import kafka_version
from riverops.runtime import RoleSpec, Runtime
from riverops.settings import Settings
from riverops.telemetry import Telemetry, serve

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_every_service_is_there_with_a_healthcheck() -> None:
    services = _compose()["services"]
    expected = {dep.KAFKA_SERVICE, "topics", "prometheus", "grafana", *dep.WORKER_SERVICES}
    assert set(services) == expected
    for name, service in services.items():
        if name != "topics":
            assert "test" in service["healthcheck"], name


def test_workers_run_their_role_with_the_shared_environment() -> None:
    services = _compose()["services"]
    for name, roles in dep.WORKER_SERVICES.items():
        service = services[name]
        assert service["command"] == ["worker", *roles]
        assert service["environment"] == dep.worker_environment()
    assert sorted(r for roles in dep.WORKER_SERVICES.values() for r in roles) == sorted(dep.WORKER_ROLES)


def test_worker_healthchecks_ask_for_the_roles_the_service_runs() -> None:
    """More than "/metrics answers": riverops.deployment checks each role joined its group."""
    services = _compose()["services"]
    for name, roles in dep.WORKER_SERVICES.items():
        check = services[name]["healthcheck"]
        assert check["test"] == ["CMD", "python", "-m", "riverops.deployment", *roles], name
        assert {"interval", "timeout", "retries", "start_period"} <= set(check), name
    assert set(dep.GROUP_ROLES) | {"lag"} == set(dep.WORKER_ROLES)


def test_every_writable_path_is_a_named_volume_owned_by_the_container_user() -> None:
    """State and artifacts survive `docker compose down` and are writable by uid 10001: the
    Dockerfile creates the mount points for that user (an empty named volume copies the
    owner of its mount point; a directory missing in the image would be root's)."""
    compose = _compose()
    env = dep.worker_environment()
    assert {env["RIVEROPS_ARTIFACT_DIR"], env["RIVEROPS_STATE_DIR"]} == set(dep.WORKER_VOLUMES.values())
    for name in dep.WORKER_SERVICES:
        mounts = compose["services"][name]["volumes"]
        assert sorted(mounts) == sorted(f"{v}:{path}" for v, path in dep.WORKER_VOLUMES.items()), name
    assert set(compose["volumes"]) == {*dep.WORKER_VOLUMES, dep.KAFKA_VOLUME}
    dockerfile = (ROOT / "Dockerfile").read_text()
    run = " ".join(line.strip().rstrip("\\") for line in dockerfile.splitlines())
    assert f"useradd --system --uid {dep.CONTAINER_UID} {dep.CONTAINER_USER}" in run
    made = re.search(r"mkdir -p ([^&]+)&&", run)
    owned = re.search(rf"chown {dep.CONTAINER_USER}:{dep.CONTAINER_USER} ([^&\n]+?)(?:&&|USER|$)", run)
    assert made and owned, dockerfile
    for path in dep.WORKER_VOLUMES.values():
        assert path in made.group(1).split() and path in owned.group(1).split(), path
    assert re.search(rf"^USER {dep.CONTAINER_USER}$", dockerfile, re.M)
    assert "RIVEROPS_STATE_DIR" in {f"RIVEROPS_{n.upper()}" for n in Settings.model_fields}


def test_kafka_keeps_its_data_on_a_volume() -> None:
    """The model registry is a topic: without the broker's data on a volume, `docker compose
    down` loses every model version. The apache/kafka image writes under /tmp unless
    KAFKA_LOG_DIRS points at its data directory."""
    kafka = _compose()["services"][dep.KAFKA_SERVICE]
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == dep.KAFKA_DATA_DIR
    assert f"{dep.KAFKA_VOLUME}:{dep.KAFKA_DATA_DIR}" in kafka["volumes"]


def test_worker_environment_names_real_settings() -> None:
    fields = {f"RIVEROPS_{name.upper()}" for name in Settings.model_fields}
    assert set(dep.worker_environment()) <= fields
    env = {k: v for k, v in dep.worker_environment().items() if not v.startswith("${")}
    settings = Settings(**{k.removeprefix("RIVEROPS_").lower(): v for k, v in env.items()})
    assert settings.metrics_port == dep.METRICS_PORT


def test_kafka_listeners_match_the_ports() -> None:
    kafka = _compose()["services"][dep.KAFKA_SERVICE]
    env = kafka["environment"]
    assert f"{dep.KAFKA_SERVICE}:{dep.KAFKA_INTERNAL_PORT}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert f"localhost:{dep.KAFKA_EXTERNAL_PORT}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert f"{dep.KAFKA_EXTERNAL_PORT}:{dep.KAFKA_EXTERNAL_PORT}" in kafka["ports"]
    default_port = int(Settings.model_fields["bootstrap_servers"].default.rsplit(":", 1)[1])
    assert default_port == dep.KAFKA_EXTERNAL_PORT


def test_compose_runs_the_kafka_version_the_pom_pins() -> None:
    image = _compose()["services"][dep.KAFKA_SERVICE]["image"]
    assert image == f"apache/kafka:{kafka_version()}"
    assert kafka_version().startswith("4.")


def test_prometheus_scrapes_every_replica_of_every_worker_service() -> None:
    """By DNS (type A: Docker answers a service name with every container's address), not
    fixed targets, so `--scale scorer=3` is three targets."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert "static_configs" not in job
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A" and sd["port"] == dep.METRICS_PORT
    assert sorted(sd["names"]) == sorted(dep.WORKER_SERVICES)
    services = _compose()["services"]
    assert f"{dep.PROMETHEUS_PORT}:{dep.PROMETHEUS_PORT}" in services["prometheus"]["ports"]
    assert f"{dep.GRAFANA_PORT}:{dep.GRAFANA_PORT}" in services["grafana"]["ports"]


def _exported_series() -> dict[str, frozenset[str]]:
    """Every series name a worker can export, with its label names.

    Built from a :class:`Telemetry` on a fresh registry (labelled metrics have no samples
    yet, so the names come from the families and their types; ``_created`` is the creation
    time prometheus_client exports for counters and histograms); ``instance`` and ``job``
    are the labels Prometheus adds when it scrapes.
    """
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, role="test")
    labels = {
        m._name: frozenset(m._labelnames)
        for m in vars(telemetry).values()
        if isinstance(m, MetricWrapperBase)
    }
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    series: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        for suffix in suffixes[family.type]:
            extra = {"instance", "job"} | ({"le"} if suffix == "_bucket" else set())
            series[family.name + suffix] = labels[family.name] | extra
    return series


def _promql_problems(expr: str, shown: set[str], series: dict[str, frozenset[str]]) -> list[str]:
    """What in ``expr`` does not exist in ``series``: metric names, then label names.

    ``shown`` are the labels a legend or annotation prints: with an aggregation they must
    be among its ``by`` labels (the others are gone), else among the metrics' labels.
    """
    names = re.findall(r"\briverops_[a-z_]+", expr)
    problems = [f"{n} is not exported" for n in names if n not in series]
    allowed = {"instance", "job"}.union(*(series.get(n, frozenset()) for n in names))
    grouped = [g.strip() for by in re.findall(r"\bby\s*\(([^)]*)\)", expr)
               for g in by.split(",") if g.strip()]
    matched = [label for inner in re.findall(r"\{([^}]*)\}", expr)
               for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", inner)]
    problems += [f"label {g} is not on {names}" for g in grouped + matched if g not in allowed]
    visible = set(grouped) if grouped else allowed
    problems += [f"shows label {s}, which the query does not keep" for s in shown - visible]
    return problems


def test_alert_rules_use_metrics_the_workers_export() -> None:
    series = _exported_series()
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 4
    for rule in rules:
        shown = {m for text in rule.get("annotations", {}).values()
                 for m in re.findall(r"\$labels\.(\w+)", text)}
        assert not _promql_problems(rule["expr"], shown, series), rule["alert"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]


def test_the_checker_finds_unknown_metrics_and_labels() -> None:
    series = _exported_series()
    assert not _promql_problems('sum by (topic) (rate(riverops_events_in_total[5m]))', {"topic"}, series)
    assert _promql_problems("riverops_events_in", set(), series)  # a counter's samples end in _total
    assert _promql_problems('riverops_consumer_lag{model="x"}', set(), series)
    assert _promql_problems("sum by (stage) (riverops_consumer_lag)", set(), series)
    assert _promql_problems("sum by (topic) (riverops_consumer_lag)", {"group"}, series)


DASHBOARD = ROOT / "deploy/grafana/dashboards/riverops.json"


def _panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, the ones inside collapsed rows included."""
    for panel in container.get("panels", []):
        yield panel
        yield from _panels(panel)


def test_dashboard_queries_use_metrics_the_workers_export() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    series = _exported_series()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    exprs: list[str] = []
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            exprs.append(expr)
            shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert not _promql_problems(expr, shown, series), (panel["title"], expr)
            used = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval", "__range", "__interval"}
            assert used <= variables, (panel["title"], used - variables)
    used_everywhere = " ".join(exprs)
    for wanted in ("riverops_events_in_total", "riverops_processing_seconds_bucket",
                   "riverops_consumer_lag", 'metric="accuracy"', 'metric="roc_auc"',
                   "riverops_drift_alarms_total", "riverops_dead_letters_total",
                   "riverops_model_alias_version"):
        assert wanted in used_everywhere, f"no panel shows {wanted}"


def test_grafana_provisions_the_dashboard_on_the_prometheus_datasource() -> None:
    provisioning = ROOT / "deploy/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["url"] == f"http://prometheus:{dep.PROMETHEUS_PORT}"
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in _panels(dashboard):
        for item in (panel, *panel.get("targets", [])):
            if "datasource" in item:
                assert item["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
    providers = yaml.safe_load((provisioning / "dashboards/riverops.yml").read_text())["providers"]
    mounts = dict(v.removesuffix(":ro").split(":", 1) for v in _compose()["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert [p["options"]["path"] for p in providers] == [mounts["./deploy/grafana/dashboards"]]


def test_prometheus_container_reads_the_config_and_rules() -> None:
    """prom/prometheus reads /etc/prometheus/prometheus.yml; alerts.yml is resolved next to it."""
    volumes = _compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in volumes
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert all((ROOT / "deploy/prometheus" / name).is_file() for name in config["rule_files"])


def _metrics_of(telemetry: Telemetry) -> str:
    return generate_latest(telemetry.registry).decode()


def test_health_needs_each_group_role_to_have_joined() -> None:
    telemetry = Telemetry(CollectorRegistry(), role="learner")
    assert dep.problems(_metrics_of(telemetry), ["learner", "retrainer"]) == [
        "learner has not joined its consumer group yet", "retrainer has not joined its consumer group yet"]
    telemetry.set_assigned(0)  # a standby (more replicas than partitions) is healthy
    telemetry.for_role("retrainer").set_assigned(3)
    assert dep.problems(_metrics_of(telemetry), ["learner", "retrainer"]) == []
    assert dep.problems(_metrics_of(Telemetry(CollectorRegistry(), role="lag")), ["lag"]) == []


def test_the_runtime_reports_its_assignment() -> None:
    """What the healthcheck reads is set by the runtime when a rebalance assigns partitions."""

    class Consumer:
        def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
            return partitions

        def assign(self, partitions: list[TopicPartition]) -> None:
            pass

        def resume(self, partitions: list[TopicPartition]) -> None:
            pass

    class Scorer(RoleSpec):
        name = "scorer"
        inputs = ("features",)

    telemetry = Telemetry(CollectorRegistry(), role="scorer")
    runtime = Runtime(Scorer(), Settings(), stop=threading.Event(), group_id="g", telemetry=telemetry)
    assert dep.problems(_metrics_of(telemetry), ["scorer"])
    runtime._on_assign(Consumer(), [TopicPartition("riverops.features", p) for p in range(2)])
    assert dep.problems(_metrics_of(telemetry), ["scorer"]) == []
    assert 'riverops_assigned_partitions{role="scorer"} 2.0' in _metrics_of(telemetry)


def test_the_healthcheck_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m riverops.deployment ROLE...`` against a real /metrics on loopback."""
    telemetry = Telemetry(CollectorRegistry(), role="monitor")
    server = serve(telemetry.registry, "127.0.0.1", 0)
    try:
        monkeypatch.setenv("RIVEROPS_METRICS_PORT", str(server.port))
        assert dep.main(["monitor"]) == 1
        assert "monitor has not joined" in capsys.readouterr().err
        telemetry.set_assigned(1)
        assert dep.main(["monitor"]) == 0
        assert dep.main(["monitor", "nope"]) == 2
    finally:
        server.close()
    assert dep.main(["monitor"]) == 1  # nothing answers any more
    assert "does not answer" in capsys.readouterr().err
