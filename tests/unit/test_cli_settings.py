"""`riverops settings` lists every setting with its variable, value and meaning."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from pydantic import BaseModel

from riverops.cli.main import cli
from riverops.settings import Settings


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _leaves(annotation, f"{prefix}{name}.")
        else:
            names.append(prefix + name)
    return names


def _json(env: dict[str, str], *args: str) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(cli, [*args, "settings", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.output)}


def test_every_field_appears_with_its_environment_variable() -> None:
    rows = _json({})
    leaves = _leaves(Settings)
    assert sorted(rows) == sorted(leaves)
    assert len(leaves) > 40  # the role sections were walked into
    for name in leaves:
        if name != "bootstrap_servers":
            assert rows[name]["env"] == ["RIVEROPS_" + name.replace(".", "__").upper()]
    assert rows["bootstrap_servers"]["env"] == ["RIVEROPS_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"]
    assert rows["retrainer.policy.margin"]["env"] == ["RIVEROPS_RETRAINER__POLICY__MARGIN"]
    assert rows["monitor.data_drift.psi_threshold"]["description"]
    assert all(rows[name]["description"] for name in leaves if "." not in name)  # top level
    assert rows["security_protocol"]["type"] == "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL"
    assert rows["partitions"]["type"] == "int >= 1"


def test_values_come_from_the_environment_and_the_options_and_secrets_are_masked() -> None:
    env = {"RIVEROPS_RETRAINER__POLICY__MARGIN": "0.07", "RIVEROPS_JOINER__LABEL_TTL_SECONDS": "60",
           "RIVEROPS_SASL_PASSWORD": "hunter2", "RIVEROPS_SIGNING_KEY": "sekrit"}
    rows = _json(env, "-b", "h:1")
    assert rows["retrainer.policy.margin"]["value"] == 0.07
    assert rows["retrainer.policy.margin"]["default"] == 0.01
    assert rows["joiner.label_ttl_seconds"]["value"] == 60.0
    assert rows["bootstrap_servers"]["value"] == "h:1"
    assert rows["sasl_password"]["value"] == "**********" and rows["signing_key"]["value"] == "**********"
    assert rows["ssl_key_password"]["value"] is None


def test_the_table_shows_variables_values_and_descriptions_without_secrets() -> None:
    result = CliRunner().invoke(cli, ["settings"], env={"COLUMNS": "300",
        "RIVEROPS_RETRAINER__POLICY__MARGIN": "0.07", "RIVEROPS_SIGNING_KEY": "sekrit"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "RIVEROPS_RETRAINER__POLICY__MARGIN" in out and "*0.07" in out
    assert "how much better a candidate must be" in out
    assert "sekrit" not in out
