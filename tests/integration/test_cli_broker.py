"""`riverops broker` and `riverops topics create` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from riverops.cli.main import cli
from riverops.kafka.tansu import free_port
from riverops.kafka.topics import TopicCatalogue
from riverops.settings import Settings

pytestmark = pytest.mark.tansu  # also in the Tansu smoke pass

def test_topics_create_is_idempotent(settings: Settings) -> None:
    args = ["-b", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix]
    first = CliRunner().invoke(cli, [*args, "topics", "create"])
    assert first.exit_code == 0, first.output
    assert "created 9, existing 0" in first.output
    second = CliRunner().invoke(cli, [*args, "topics", "create"])
    assert second.exit_code == 0 and "created 0, existing 9" in second.output
    listed = CliRunner().invoke(cli, [*args, "topics", "list"])
    as_the_cli_sees_it = Settings(bootstrap_servers=settings.bootstrap_servers, topic_prefix=settings.topic_prefix)
    for spec in TopicCatalogue.from_settings(as_the_cli_sees_it):
        assert f"{spec.name}\t{spec.partitions}" in listed.output


def test_broker_command_runs_in_the_foreground_and_stops_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    log = tmp_path / "tansu.log"
    process = subprocess.Popen(
        [sys.executable, "-c", "from riverops.cli.main import main; main()",
         "broker", "--port", str(port), "--log-file", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line
        result = CliRunner().invoke(cli, ["-b", f"127.0.0.1:{port}", "topics", "create"])
        assert result.exit_code == 0, result.output
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0, out
    assert "stopping the broker" in out
    assert log.exists() and "tansu" in log.read_text()
    time.sleep(0.2)


def test_acls_apply_against_an_unreachable_broker_says_so_in_one_line() -> None:
    result = CliRunner().invoke(cli, ["-b", f"127.0.0.1:{free_port()}", "acls", "--role", "service", "--apply"])
    assert result.exit_code == 1
    assert "Error: cannot reach the broker" in result.output
