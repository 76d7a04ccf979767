"""The command explains itself."""

from __future__ import annotations

import json

from click.testing import CliRunner

from riverops.cli.main import cli


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("broker", "topics", "demo", "settings"):
        assert command in result.output


def test_settings_prints_masked_json() -> None:
    result = CliRunner().invoke(
        cli, ["-b", "h:1", "settings"], env={"RIVEROPS_SASL_PASSWORD": "pw", "RIVEROPS_SIGNING_KEY": "k"}
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["bootstrap_servers"] == "h:1" and shown["sasl_password"] == "**********"


def test_bad_settings_are_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["settings"], env={"RIVEROPS_PARTITIONS": "zero"})
    assert result.exit_code == 2 and "bad settings" in result.output
