"""The Apache Kafka broker's jars, fetched once from Maven Central into a cache.

``deploy/kafka/pom.xml`` pins the Kafka version and its logging backend; Maven copies the
runtime jars into ``~/.cache/riverops/kafka-VERSION`` the first time a Kafka broker is
started, and every later start reuses them. An unpacked Kafka distribution works too:
pass its ``libs/`` directory (``riverops broker --engine kafka --jars DIR``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from riverops.schemas.errors import BrokerError

__all__ = ["POM", "kafka_version", "pom_property", "default_jar_dir", "ensure_jars", "java_binary"]

POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"


def pom_property(pom: Path, name: str) -> str:
    """The value of ``<name>`` in a pom's properties; BrokerError when it cannot be read."""
    try:
        text = pom.read_text()
    except OSError as exc:
        raise BrokerError(f"cannot read {pom} (it pins the server's version)") from exc
    found = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", text)
    if found is None:
        raise BrokerError(f"{pom} has no <{name}>")
    return found.group(1).strip()


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version the pom pins (``<kafka.version>``)."""
    if not pom.exists():
        raise BrokerError(
            f"the Kafka engine needs {pom} (it pins the broker's version): run riverops from its "
            "source tree, or pass the libs/ directory of a Kafka distribution with --jars"
        )
    return pom_property(pom, "kafka.version")


def default_jar_dir(version: str) -> Path:
    return Path.home() / ".cache" / "riverops" / f"kafka-{version}"


def java_binary() -> str:
    """``java`` on the PATH, or a clear error."""
    found = shutil.which("java")
    if found is None:
        raise BrokerError("the Kafka engine needs Java 17+ ('java' is not on the PATH)")
    return found


def _has_broker(directory: Path) -> bool:
    return any(directory.glob("kafka_2.13-*.jar")) and any(directory.glob("log4j-slf4j*-impl-*.jar"))


def ensure_jars(directory: Path | None = None, *, pom: Path = POM) -> Path:
    """A directory holding the broker's runtime jars, fetched with Maven when missing.

    The copy lands in a temporary sibling first and is renamed into place, so an
    interrupted fetch never leaves a half-filled cache that later starts would trust.
    """
    target = directory or default_jar_dir(kafka_version(pom))
    if target.is_dir() and _has_broker(target):
        return target
    if directory is not None and directory.is_dir():
        raise BrokerError(f"{directory} holds no kafka_2.13 jar with a log4j SLF4J binding")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "the Kafka engine fetches the broker from Maven Central and needs Maven ('mvn' is not "
            "on the PATH), or pass a Kafka distribution's libs/ directory with --jars"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fetched = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
            capture_output=True, text=True, timeout=900,
        )
        if fetched.returncode != 0 or not _has_broker(staging):
            tail = "\n".join((fetched.stdout + fetched.stderr).splitlines()[-15:])
            raise BrokerError(f"Maven could not fetch the Kafka broker ({pom}):\n{tail}")
        try:
            staging.rename(target)
        except OSError:
            if not _has_broker(target):  # not a concurrent fetch that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
