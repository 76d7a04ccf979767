"""A real Schema Registry for the Confluent wire format tests: Apicurio Registry, over HTTP.

Apicurio serves the Confluent-compatible API at ``/apis/ccompat/v7``. ``deploy/apicurio/pom.xml``
pins the version; Maven unpacks the app archive from Maven Central once into
``~/.cache/riverops/apicurio-VERSION`` and every later start reuses it. The server keeps its
data in an in-memory H2 database, so each start begins empty. The 3.3 line is built for
Java 21, so a Java 21+ is looked for beside the ``java`` on the PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from riverops.kafka.jars import pom_property
from riverops.kafka.tansu import free_port, log_tail, terminate
from riverops.schemas.errors import BrokerError

__all__ = [
    "POM",
    "CCOMPAT_PATH",
    "MIN_JAVA",
    "RegistryServerError",
    "ApicurioRegistry",
    "apicurio_version",
    "default_app_dir",
    "ensure_app",
    "java_binary",
]

POM = Path(__file__).resolve().parents[2] / "deploy" / "apicurio" / "pom.xml"
CCOMPAT_PATH = "/apis/ccompat/v7"
MIN_JAVA = 21
_RUNNER = "quarkus-run.jar"


class RegistryServerError(RuntimeError):
    """The schema registry server could not be fetched, started or reached."""


def apicurio_version(pom: Path = POM) -> str:
    """The Apicurio Registry version the pom pins (``<apicurio.version>``)."""
    try:
        return pom_property(pom, "apicurio.version")
    except BrokerError as exc:
        raise RegistryServerError(str(exc)) from exc


def default_app_dir(version: str) -> Path:
    return Path.home() / ".cache" / "riverops" / f"apicurio-{version}"


def _has_app(directory: Path) -> bool:
    return (directory / _RUNNER).is_file() and (directory / "lib").is_dir()


def ensure_app(directory: Path | None = None, *, version: str | None = None, pom: Path = POM) -> Path:
    """A directory holding the unpacked app (``quarkus-run.jar``), fetched with Maven if missing.

    Maven unpacks into a temporary sibling that is renamed into place, so an interrupted
    fetch never leaves a half-filled cache that later starts would trust.
    """
    version = version or apicurio_version(pom)
    target = directory or default_app_dir(version)
    if _has_app(target):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryServerError(
            f"the schema registry server is fetched from Maven Central and needs Maven ('mvn' is "
            f"not on the PATH); or unpack io.apicurio:apicurio-registry-app:{version}:tar.gz:all "
            f"into {target}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fetched = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:unpack",
             f"-Dapicurio.version={version}", f"-Dapicurio.output={staging}",
             f"-Dapicurio.markers={staging / '.markers'}"],
            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        )
        if fetched.returncode != 0 or not _has_app(staging):
            tail = "\n".join((fetched.stdout + fetched.stderr).splitlines()[-15:])
            raise RegistryServerError(
                f"Maven could not fetch Apicurio Registry {version} ({pom}):\n{tail}"
            )
        shutil.rmtree(staging / ".markers", ignore_errors=True)
        staging.chmod(0o755)  # mkdtemp made it private
        try:
            staging.rename(target)
        except OSError:
            if not _has_app(target):  # not a concurrent fetch that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _java_major(java: str) -> int | None:
    try:
        shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown.stderr + shown.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def java_binary(minimum: int = MIN_JAVA) -> str:
    """A ``java`` of at least version ``minimum``: ``$JAVA_HOME``, the PATH, then /usr/lib/jvm."""
    candidates: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    candidates += [str(path) for path in sorted(Path("/usr/lib/jvm").glob("*/bin/java"))]
    seen: dict[str, int | None] = {}
    for java in candidates:
        real = os.path.realpath(java)
        if real in seen or not os.access(real, os.X_OK):
            continue
        seen[real] = _java_major(real)
        major = seen[real]
        if major is not None and major >= minimum:
            return java
    found = ", ".join(f"{java} ({major or '?'})" for java, major in seen.items()) or "no java"
    raise RegistryServerError(
        f"the schema registry server needs Java {minimum}+ (set JAVA_HOME to one); found: {found}"
    )


class ApicurioRegistry:
    """Start, probe and stop one Apicurio Registry on loopback ports.

    ``compatibility`` is the global compatibility rule the server starts with: BACKWARD,
    Confluent Schema Registry's default (Apicurio's own default is NONE: no check at all);
    None keeps Apicurio's. Its output goes to ``log_path``, kept after it stops.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        app_dir: Path | None = None,
        java: str | None = None,
        log_path: Path | None = None,
        compatibility: str | None = "BACKWARD",
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.management_port = free_port(host)  # health and metrics: a second listener
        self.app_dir = app_dir
        self.java = java
        self.compatibility = compatibility
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"riverops-apicurio-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL of the Confluent-compatible API (``schema_registry_url``)."""
        return f"http://{self.host}:{self.port}{CCOMPAT_PATH}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The command line (fetching the app and finding a Java first if needed)."""
        app_dir = self.app_dir = ensure_app(self.app_dir)
        self.java = self.java or java_binary()
        properties = {
            "quarkus.http.host": self.host,
            "quarkus.http.port": str(self.port),
            "quarkus.management.host": self.host,
            "quarkus.management.port": str(self.management_port),
        }
        if self.compatibility is not None:
            properties["apicurio.rules.global.compatibility"] = self.compatibility
        # a short-lived test server: C1 only starts it in about half the time
        return [self.java, "-Xmx512m", "-XX:TieredStopAtLevel=1",
                *(f"-D{key}={value}" for key, value in properties.items()),
                "-jar", str(app_dir / _RUNNER)]

    def start(self, *, timeout: float = 120.0) -> Self:
        """Start the server and wait until ``GET /subjects`` of the ccompat API answers 200."""
        if self.running:
            return self
        command = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            command, cwd=self.log_path.parent, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise RegistryServerError(
                    f"Apicurio Registry exited with code {code}; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            if self._answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RegistryServerError(
            f"Apicurio Registry did not answer {self.url}/subjects within {timeout}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            terminate(process, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
