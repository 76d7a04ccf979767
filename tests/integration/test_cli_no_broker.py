"""Without a broker every command that needs one stops with one line saying so.

No broker is started: the address is a free port with nothing listening (connections are
refused) or a socket that accepts and never answers (a broker that hangs). Each command
runs as a user runs it, in its own process, so what is counted is what reaches stderr.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverops.kafka.tansu import free_port

COMMANDS: list[list[str]] = [
    ["status"],
    ["status", "--json"],
    ["topics", "create"],
    ["topics", "list"],
    ["acls", "--role", "service", "--apply"],
    ["models", "list"],
    ["models", "show", "fraud"],
    ["models", "register", "fraud", "--spec", "hoeffding-tree", "--param", "grace_period=50"],
    ["models", "promote", "fraud", "1", "--reason", "r"],
    ["models", "stage", "fraud", "1", "shadow", "--reason", "r"],
    ["models", "rollback", "fraud", "--reason", "r"],
    ["models", "archive", "fraud", "1", "--reason", "r"],
    ["retrain", "fraud"],
    ["produce", "features", "{features}"],
    ["produce", "labels", "{labels}"],
    ["tail", "predictions"],
    ["tail", "features", "--from-beginning", "--max", "3"],
]


def _start(address: str, args: list[str], files: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from riverops.cli.main import main; main()", "-b", address,
         *(a.format(**files) for a in args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RIVEROPS_SIGNING_KEY": "k", "COLUMNS": "200"},
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    features, labels = tmp_path / "tx.csv", tmp_path / "labels.csv"
    features.write_text("event_id,entity_id,amount\ne1,c1,3.5\n")
    labels.write_text("event_id,label\ne1,true\n")
    return {"features": str(features), "labels": str(labels)}


def _assert_one_line(address: str, args: list[str], process: subprocess.Popen[str]) -> None:
    out, err = process.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert process.returncode == 1, (args, process.returncode, out, err)
    assert len(lines) == 1, (args, err)
    assert lines[0].lower().startswith(f"error: cannot reach the broker at {address} "), (args, err)
    assert out == "", (args, out)


def test_every_broker_command_fails_fast_with_one_line(files: dict[str, str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    running = [(args, _start(address, args, files)) for args in COMMANDS]
    for args, process in running:
        _assert_one_line(address, args, process)


@pytest.fixture
def silent_broker() -> Iterator[tuple[str, socket.socket]]:
    """An address that accepts connections and never answers a request."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.0)
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}", server
    finally:
        server.close()


def _accepted(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def test_a_broker_that_never_answers_is_reported_the_same_way(silent_broker: tuple[str, socket.socket],
                                                              files: dict[str, str]) -> None:
    address, server = silent_broker
    process = _start(address, ["--connect-timeout", "2", "status"], files)
    _assert_one_line(address, ["status"], process)
    assert _accepted(server) >= 1  # it did knock: the silence is what it reports


@pytest.mark.parametrize("args, expected", [
    (["models", "register", "fraud", "--spec", "nope"],
     "known specs: arf, hat, hoeffding-tree, linreg, logreg, tree-regressor"),
    (["models", "register", "fraud", "--spec", "hat", "--param", "depth=3"],
     "model spec 'hat' takes no param 'depth' (its params: delta, grace_period)"),
    (["models", "register", "fraud", "--spec", "hat", "--param", "grace_period=fifty"],
     "param 'grace_period' takes an int, not 'fifty'"),
    (["models", "register", "fraud", "--param", "learning_rate"], "'learning_rate' is not NAME=VALUE"),
    (["tail", "nope"], "'nope' is neither a topic role (features, predictions"),
])
def test_bad_arguments_are_refused_before_the_broker_is_asked(
    silent_broker: tuple[str, socket.socket], files: dict[str, str], args: list[str], expected: str,
) -> None:
    address, server = silent_broker
    process = _start(address, args, files)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, (out, err)
    assert expected in " ".join(err.split()), err
    assert _accepted(server) == 0  # no connection was even attempted
