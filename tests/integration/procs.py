"""``riverops worker ROLE`` as a real subprocess, configured through RIVEROPS_* variables
only, so that kill -9 is real and the documented environment is what is exercised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from riverops.settings import Settings

__all__ = ["settings_env", "start_worker_process", "stop_process", "run_worker_to_exit"]


def settings_env(settings: Settings) -> dict[str, str]:
    """The RIVEROPS_* variables that reproduce ``settings`` in a child process; a role's
    section becomes one variable per knob (``RIVEROPS_RETRAINER__POLICY__MARGIN``), as an
    operator writes them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVEROPS_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    _put(env, "RIVEROPS", settings.model_dump())
    return env


def _put(env: dict[str, str], name: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _put(env, f"{name}{'_' if name == 'RIVEROPS' else '__'}{key.upper()}", item)
        return
    if value is None:
        return
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, list | tuple):
        value = json.dumps(list(value))  # as an operator writes a list: JSON
    env[name] = str(value)


def start_worker_process(settings: Settings, role: str, *, group_prefix: str, log: Path,
                         extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``riverops worker ROLE --no-metrics`` with the settings in its environment."""
    env = {**settings_env(settings), **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", "from riverops.cli.main import main; main()", "worker", role,
         "--no-metrics", "--group-prefix", group_prefix],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, wait; SIGKILL if it lingers. The exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def run_worker_to_exit(settings: Settings, role: str, *, group_prefix: str, log: Path,
                       timeout: float = 90) -> tuple[int, str]:
    """Run ``riverops worker ROLE`` until it exits by itself (stopped after ``timeout``):
    its exit code and its log."""
    process = start_worker_process(settings, role, group_prefix=group_prefix, log=log)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    return stop_process(process), log.read_text()
