"""A real Prometheus server scrapes a real worker and runs the alerts and dashboard queries.

The unit tests check names and syntax; this one checks the wiring: the worker's /metrics
is parsed by the server (``up`` is 1 and a counter holds the count of records scored),
every alert rule of deploy/prometheus/alerts.yml evaluates without error on live series,
and every Grafana panel query runs. Needs the ``prometheus`` binary (Debian package
``prometheus``; ``.ci/run`` installs it), else it skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from river.datasets import synth

from riverops.kafka.producer import EventProducer
from riverops.kafka.tansu import free_port
from riverops.settings import Settings
from riverops.worker import run_roles

from .test_feedback_loop import _register

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
N = 300

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is not installed (apt-get install prometheus; .ci/run installs it)",
)


def _api(port: int, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus HTTP API answer (asserting its status is success)."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}{query}", timeout=5) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer
    return answer["data"]


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    return list(_api(port, "query", query=expr)["result"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(server port, the worker metrics port it scrapes every second), with the alerts loaded."""
    assert PROMETHEUS is not None
    port, target = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy/prometheus/alerts.yml")],
        "scrape_configs": [{"job_name": "riverops",
                            "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        yield port, target
    finally:
        process.terminate()
        process.wait(30)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/riverops.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable, value in (("$__rate_interval", "1m"), ("$__range", "1h"), ("$model", ".*"),
                            ("$window", "count")):
        exprs = [e.replace(variable, value) for e in exprs]
    return exprs


def test_prometheus_scrapes_a_worker_and_evaluates_the_alerts(
    loop_settings: Settings, prometheus: tuple[int, int]
) -> None:
    port, target = prometheus
    settings = Settings(**{**loop_settings.model_dump(), "metrics_port": target,
                           "signing_key": "test-signing-key"})
    _register(settings)
    stop, exit_code = threading.Event(), []
    worker = threading.Thread(target=lambda: exit_code.append(run_roles(
        settings, ["scorer", "lag"], stop=stop, group_prefix=f"riverops-p{uuid.uuid4().hex[:6]}")))
    worker.start()
    try:
        t0 = datetime(2026, 11, 1, tzinfo=UTC)
        with EventProducer(settings) as producer:
            for i, (x, _) in enumerate(synth.Agrawal(classification_function=0, seed=5).take(N)):
                producer.send_features(event_id=f"p{i}", model="fraud", entity_id="c", features=x,
                                       event_time=t0 + timedelta(seconds=i))
        scored = f'riverops_events_in_total{{role="scorer", topic="{settings.topic_prefix}features"}}'
        deadline = time.monotonic() + 60
        while True:
            result = _query(port, scored)
            if result and float(result[0]["value"][1]) >= N:
                break
            assert time.monotonic() < deadline, f"Prometheus never saw {N} records scored: {result}"
            time.sleep(0.5)
        up = _query(port, 'up{job="riverops"}')
        assert [float(r["value"][1]) for r in up] == [1.0]
        assert float(result[0]["value"][1]) == N
        # the alerts read *_created to catch a labelled counter's first increment
        assert _query(port, 'riverops_events_in_created{role="scorer"}')
        time.sleep(2)  # a rule evaluation after the scorer's series exist
        groups = _api(port, "rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]
        assert len(rules) == sum(len(group["rules"]) for group in alerts)
        assert all(rule["health"] == "ok" for rule in rules), rules
        for expr in _dashboard_queries():
            _query(port, expr)  # runs without an error
        (consumed,) = [e for e in _dashboard_queries() if "rate(riverops_events_in_total" in e]
        throughput = _query(port, consumed)
        assert any(r["metric"].get("role") == "scorer" for r in throughput), throughput
    finally:
        stop.set()
        worker.join(60)
    assert exit_code == [0]
