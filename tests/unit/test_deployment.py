"""docker-compose.yml and prometheus.yml agree with the settings and streams/deployment.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streams import deployment as dep
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_every_service_is_there_with_a_healthcheck() -> None:
    services = _compose()["services"]
    expected = {dep.KAFKA_SERVICE, "topics", "prometheus", "grafana", *dep.WORKER_ROLES}
    assert set(services) == expected
    for name, service in services.items():
        if name != "topics":
            assert "test" in service["healthcheck"], name


def test_workers_run_their_role_with_the_shared_environment() -> None:
    services = _compose()["services"]
    for role in dep.WORKER_ROLES:
        service = services[role]
        assert service["command"] == ["worker", role]
        assert service["environment"] == dep.worker_environment()


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


def test_prometheus_scrapes_every_worker_metrics_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{role}:{dep.METRICS_PORT}" for role in dep.WORKER_ROLES}
    services = _compose()["services"]
    assert f"{dep.PROMETHEUS_PORT}:{dep.PROMETHEUS_PORT}" in services["prometheus"]["ports"]
    assert f"{dep.GRAFANA_PORT}:{dep.GRAFANA_PORT}" in services["grafana"]["ports"]


def test_alert_rules_use_metrics_the_workers_export() -> None:
    import re

    from prometheus_client import CollectorRegistry

    from streams.telemetry import Telemetry

    registry = CollectorRegistry()
    Telemetry(registry, role="test")
    families = {family.name for family in registry.collect()}  # labelled metrics have no samples yet
    exported = families | {f"{n}_total" for n in families} | {f"{n}_bucket" for n in families}
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 4
    for rule in rules:
        for name in re.findall(r"riverops_[a-z_]+", rule["expr"]):
            assert name in exported, f"{rule['alert']} uses {name}, which no worker exports"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
