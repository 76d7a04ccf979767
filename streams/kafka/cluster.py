"""A local Apache Kafka cluster in KRaft mode: one or three combined broker+controller nodes
started from the jars of :mod:`riverops.kafka.jars`, without Docker.

It is what the integration suite runs on (``tests/conftest.py``) and what
``riverops broker --engine kafka`` starts. Unlike the embedded Tansu broker it keeps its log
directories, so a cluster stopped and started again on the same ``data_dir`` keeps every
topic, offset and registry record.

With ``tls`` every node also listens with TLS on two more ports: ``SSL`` requires a client
certificate (mTLS; the principal is the certificate's CN) and ``SASL_SSL`` takes
SCRAM-SHA-512 users. With ``authorizer`` the StandardAuthorizer enforces ACLs on those
listeners; the PLAINTEXT listener stays the loopback admin listener of the cluster (its
ANONYMOUS principal is a super user, as are the controllers).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

from riverops.kafka.jars import ensure_jars, java_binary
from riverops.kafka.tansu import free_port, log_tail, terminate
from riverops.schemas.errors import BrokerError

__all__ = ["KafkaCluster", "BrokerTls", "Listener", "new_cluster_id", "JvmProfile", "JVM_FLAGS"]

Listener = Literal["PLAINTEXT", "SSL", "SASL_SSL"]

_LOG4J = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.kafkaapache.name = org.apache.kafka
logger.kafkaapache.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
logger.authorizer.additivity = false
"""


def new_cluster_id() -> str:
    """16 random bytes, url-safe base64 without padding (what StorageTool expects)."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


@dataclass(frozen=True)
class BrokerTls:
    """The broker's certificate, key (PKCS#8 PEM, unencrypted) and the CA it trusts."""

    ca: Path
    cert: Path
    key: Path


JvmProfile = Literal["quick", "kafka"]
JVM_FLAGS: dict[JvmProfile, tuple[str, ...]] = {
    # the tests' and `riverops broker`'s: starts fast, little memory (no C2 compiler, serial GC)
    "quick": ("-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"),
    # what Apache Kafka's own start scripts run it with (kafka-server-start.sh's heap,
    # kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS), for a long-lived broker: freshly
    # started on 2 cores, its C2 compiling made the bench's latency p99 196-219 ms against
    # 25-29 ms quick (docs/benchmarks.md)
    "kafka": ("-Xmx1g", "-Xms1g", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
              "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
              "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true"),
}
"""The JVM flags of a node (its heap included), by profile."""


@dataclass
class _Node:
    node_id: int
    directory: Path
    ports: dict[str, int]  # listener name -> port, CONTROLLER included
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class KafkaCluster:
    """Start, probe and stop an Apache Kafka cluster of ``nodes`` combined nodes."""

    def __init__(
        self,
        *,
        nodes: Literal[1, 3] = 1,
        host: str = "127.0.0.1",
        port: int | None = None,
        data_dir: Path | None = None,
        jars: Path | None = None,
        tls: BrokerTls | None = None,
        authorizer: bool = False,
        jvm: JvmProfile = "quick",
        overrides: dict[str, str] | None = None,
    ) -> None:
        if nodes not in (1, 3):
            raise BrokerError(f"a local Kafka cluster has 1 or 3 nodes, not {nodes}")
        if authorizer and tls is None:
            raise BrokerError("the authorizer needs the TLS listeners (only they authenticate)")
        self.host = host
        self.tls = tls
        self.authorizer = authorizer
        if jvm not in JVM_FLAGS:
            raise BrokerError(f"unknown JVM profile {jvm!r}; one of {sorted(JVM_FLAGS)}")
        self.jvm: JvmProfile = jvm
        self.overrides = dict(overrides or {})
        self.jars = jars
        self._owns_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="riverops-kafka-"))
        names = ["PLAINTEXT", "CONTROLLER"] + (["SSL", "SASL_SSL"] if tls else [])
        self._nodes = [
            _Node(
                node_id=i + 1,
                directory=self.data_dir / f"node-{i + 1}",
                ports={name: (port if (port and i == 0 and name == "PLAINTEXT") else free_port(host))
                       for name in names},
            )
            for i in range(nodes)
        ]

    # --- addresses -----------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap("PLAINTEXT")

    def bootstrap(self, listener: Listener) -> str:
        """host:port of every node on ``listener``, comma separated."""
        if listener != "PLAINTEXT" and self.tls is None:
            raise BrokerError(f"this cluster has no {listener} listener (it was started without TLS)")
        return ",".join(f"{self.host}:{node.ports[listener]}" for node in self._nodes)

    @property
    def node_ids(self) -> list[int]:
        return [node.node_id for node in self._nodes]

    @property
    def pid(self) -> int:
        node = self._nodes[0]
        if node.process is None:
            raise BrokerError("the broker is not running")
        return node.process.pid

    @property
    def running(self) -> bool:
        return all(node.running for node in self._nodes)

    @property
    def log_path(self) -> Path:
        return self._nodes[0].log_path

    # --- configuration -----------------------------------------------------------------
    def node_properties(self, node_id: int) -> dict[str, str]:
        """The ``node.properties`` of one node, as a dict."""
        node = self._node(node_id)
        count = len(self._nodes)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.ports['CONTROLLER']}" for n in self._nodes)
        public = [name for name in node.ports if name != "CONTROLLER"]
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": ",".join(
                f"{name}://{'127.0.0.1' if name == 'CONTROLLER' else self.host}:{node.ports[name]}"
                for name in node.ports
            ),
            "advertised.listeners": ",".join(f"{name}://{self.host}:{node.ports[name]}" for name in public),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                f"{name}:{'PLAINTEXT' if name == 'CONTROLLER' else name}" for name in node.ports
            ),
            "log.dirs": str(node.directory / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(count),
            "min.insync.replicas": "1" if count == 1 else "2",
            "offsets.topic.replication.factor": str(count),
            "transaction.state.log.replication.factor": str(count),
            "transaction.state.log.min.isr": "1" if count == 1 else "2",
            "share.coordinator.state.topic.replication.factor": str(count),
            "share.coordinator.state.topic.min.isr": "1" if count == 1 else "2",
            "group.initial.rebalance.delay.ms": "0",
            # a cluster fails over from a broker that stops heartbeating; a single node has
            # no one to fail over to, and fencing it for a stall of its own (a busy disk or
            # CPU: 21 s once, in a test run) only takes every partition offline meanwhile
            "broker.session.timeout.ms": "4000" if count > 1 else "60000",
            # the 128 MB default is allocated at start; 2 MB dedupes what tests compact
            "log.cleaner.dedupe.buffer.size": "2097152",
            "auto.create.topics.enable": "false",
            # riverops stamps records with their event time, and Kafka's time retention
            # measures that stamp: under the 7-day default a replay of older history (the
            # tests' fixed dates, a backfill) is deleted within minutes. A local cluster
            # keeps everything until its data directory is removed (docs/topics.md).
            "log.retention.ms": "-1",
        }
        if self.tls is not None:
            props |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self._keystore_path()),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca),
                "listener.name.ssl.ssl.client.auth": "required",
                # the principal of a client certificate is its CN: User:scorer, as with SCRAM
                "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            }
        if self.authorizer:
            props |= {
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": "User:ANONYMOUS",
                "allow.everyone.if.no.acl.found": "false",
            }
        props |= self.overrides
        return props

    def _keystore_path(self) -> Path:
        return self.data_dir / "keystore.pem"

    def _node(self, node_id: int) -> _Node:
        for node in self._nodes:
            if node.node_id == node_id:
                return node
        raise BrokerError(f"no node {node_id} (nodes: {self.node_ids})")

    def _prepare(self, java: str, jars: Path) -> None:
        """Write configs, and format the log directories that are not formatted yet."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(_LOG4J)
        if self.tls is not None:  # Kafka's PEM keystore: the private key, then the chain
            self._keystore_path().write_bytes(self.tls.key.read_bytes() + self.tls.cert.read_bytes())
        unformatted = [n for n in self._nodes if not (n.directory / "data" / "meta.properties").exists()]
        if unformatted and len(unformatted) != len(self._nodes):
            raise BrokerError(f"{self.data_dir}: some nodes are formatted and some not; remove it to start anew")
        cluster_id = new_cluster_id()
        for node in self._nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            config = node.directory / "node.properties"
            config.write_text("".join(f"{k}={v}\n" for k, v in self.node_properties(node.node_id).items()))
            if node in unformatted:
                formatted = subprocess.run(
                    # one argument: an id that starts with "-" would read as an option
                    [java, "-cp", f"{jars}/*", "kafka.tools.StorageTool", "format",
                     f"--cluster-id={cluster_id}", "--config", str(config)],
                    capture_output=True, text=True, timeout=120,
                )
                if formatted.returncode != 0:
                    raise BrokerError(f"cannot format {node.directory}: {formatted.stdout}{formatted.stderr}")

    # --- lifecycle -----------------------------------------------------------------
    def start(self, *, timeout: float = 90.0) -> Self:
        """Start every node that is not running and wait until metadata lists them all."""
        java = java_binary()
        jars = ensure_jars(self.jars)
        self._prepare(java, jars)
        for node in self._nodes:
            if not node.running:
                self._launch(node, java, jars)
        self.wait_ready(timeout=timeout)
        return self

    def _launch(self, node: _Node, java: str, jars: Path) -> None:
        node.log = open(node.log_path, "ab")
        node.process = subprocess.Popen(
            [java, *JVM_FLAGS[self.jvm],
             f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
             "-cp", f"{jars}/*", "kafka.Kafka", str(node.directory / "node.properties")],
            stdout=node.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, we stop it cleanly
        )

    def wait_ready(self, *, timeout: float = 90.0, nodes: list[int] | None = None) -> None:
        """Until a metadata answer lists every running node (or ``nodes``) as a broker."""
        expected = set(nodes or [n.node_id for n in self._nodes if n.running])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self._nodes:
                if node.process is not None and node.process.poll() is not None:
                    code = node.process.returncode
                    self.stop()
                    raise BrokerError(f"Kafka node {node.node_id} exited with code {code}; "
                                      f"log:\n{self.log_tail(node_id=node.node_id)}")
            if expected <= self._brokers_in_metadata():
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"Kafka did not list brokers {sorted(expected)} within {timeout}s; "
                          f"log:\n{self.log_tail()}")

    def _brokers_in_metadata(self) -> set[int]:
        from confluent_kafka.admin import AdminClient

        live = ",".join(f"{self.host}:{n.ports['PLAINTEXT']}" for n in self._nodes if n.running)
        if not live:
            return set()
        try:
            metadata = AdminClient({"bootstrap.servers": live, "log_level": 0}).list_topics(timeout=2)
        except Exception:
            return set()
        return {int(broker_id) for broker_id in metadata.brokers}

    def stop_node(self, node_id: int, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Stop one node: SIGTERM (controlled shutdown) then SIGKILL, or SIGKILL at once."""
        node = self._node(node_id)
        process, node.process = node.process, None
        if process is not None and process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGCONT)  # in case a test froze it
            except ProcessLookupError:
                pass
            if kill:
                process.kill()
                process.wait(timeout)
            else:
                terminate(process, timeout)
        if node.log is not None:
            node.log.close()
            node.log = None

    def start_node(self, node_id: int, *, timeout: float = 90.0) -> None:
        """Start one stopped node again on its log directory and wait until it is listed."""
        node = self._node(node_id)
        if not node.running:
            self._launch(node, java_binary(), ensure_jars(self.jars))
        self.wait_ready(timeout=timeout)

    def stop(self, *, timeout: float = 20.0) -> None:
        """Stop every node (all at once, so none waits for a quorum that left)."""
        for node in self._nodes:
            if node.process is not None and node.running:
                try:
                    os.kill(node.process.pid, signal.SIGCONT)  # in case a test froze it
                    node.process.terminate()
                except ProcessLookupError:
                    pass
        for node in self._nodes:
            self.stop_node(node.node_id, timeout=timeout)

    def remove(self) -> None:
        """Stop, then delete the data directory if this object made it."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20, *, node_id: int = 1) -> str:
        return log_tail(self._node(node_id).log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()
