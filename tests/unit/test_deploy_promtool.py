"""Prometheus's own checker on deploy/prometheus and on the dashboard's queries.

``promtool`` (Debian/Ubuntu package ``prometheus``; ``.ci/run`` installs it) parses the
config and rules as the server would, and ``promtool test rules`` evaluates the alerts on
the synthetic series of deploy/prometheus/alerts_test.yml: every alert must fire when its
series crosses the threshold for its ``for`` and stay quiet otherwise. Every command runs
from a temporary directory, so relative paths are resolved the way the server resolves
them (rule files next to the config), not from the repository root by luck.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy/prometheus"
DASHBOARD = ROOT / "deploy/grafana/dashboards/riverops.json"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (apt-get install prometheus; .ci/run installs it)",
)


def _promtool(*args: str | Path, cwd: Path) -> str:
    """Run promtool and return its output; a failure shows what promtool said."""
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def _alert_names() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"]}


@needs_promtool
def test_alert_rules_parse(tmp_path: Path) -> None:
    output = _promtool("check", "rules", PROMETHEUS / "alerts.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(_alert_names())} rules found" in output


@needs_promtool
def test_config_parses_and_finds_its_rule_file(tmp_path: Path) -> None:
    output = _promtool("check", "config", PROMETHEUS / "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 1 rule files found" in output
    assert str(PROMETHEUS / "alerts.yml") in output  # resolved next to the config


@needs_promtool
def test_every_alert_fires_on_its_synthetic_series(tmp_path: Path) -> None:
    output = _promtool("test", "rules", PROMETHEUS / "alerts_test.yml", cwd=tmp_path)
    assert "SUCCESS" in output


def test_the_rule_tests_cover_every_alert() -> None:
    """promtool passes a test file that never mentions an alert: this catches the gap."""
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]
             if not case["exp_alerts"]}
    assert fired == _alert_names()
    assert quiet == _alert_names()


def _grafana_free(expr: str) -> str:
    """``expr`` with Grafana's variables replaced by values Prometheus accepts."""
    for variable, value in (("$__rate_interval", "1m"), ("$__range", "1h"), ("$__interval", "15s"),
                            ("$model", ".*"), ("$window", "count")):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each panel query, as a recording rule, goes through Prometheus's PromQL parser."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [*dashboard["panels"], *(p for row in dashboard["panels"] for p in row.get("panels", []))]
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert exprs
    rules = [{"record": f"dashboard:query_{i}", "expr": _grafana_free(e)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = _promtool("check", "rules", path, cwd=tmp_path)
    assert re.search(rf"SUCCESS: {len(exprs)} rules found", output), output
