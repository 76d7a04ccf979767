"""Broker-side plumbing shared by the benchmarks: settings, topics, the champion, preloading,
worker subprocesses, and readers that count what became readable and when.

Workers run as ``riverops worker ROLE`` subprocesses, as in production: each has its own
interpreter (no GIL shared with the harness) and its own peak RSS (``VmHWM``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.workload import MODEL, label_of, rows
from riverops.kafka.clients import make_consumer, make_producer
from riverops.kafka.registry_topic import publish_records
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.settings import ProcessingGuarantee, Settings

__all__ = ["bench_settings", "cpu_seconds", "register_champion", "preload", "Worker", "start_worker",
           "Counter", "create_plain_topics", "SIGNING_KEY", "train_champion", "time_outputs"]

SIGNING_KEY = "bench-signing-key"
ROOT = Path(__file__).resolve().parents[1]


def bench_settings(bootstrap: str, workdir: Path, *, partitions: int,
                   guarantee: ProcessingGuarantee = "at_least_once") -> Settings:
    """Fresh topic names (a uuid prefix), 6 s sessions (fast group joins on Tansu);
    at-least-once unless told (the embedded broker cannot do transactions)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = Settings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=partitions,
        session_timeout_ms=6000, signing_key=SIGNING_KEY, processing_guarantee=guarantee,
        artifact_dir=workdir / prefix / "artifacts", state_dir=workdir / prefix / "state",
    )
    create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
    return settings


def create_plain_topics(settings: Settings, names: Sequence[str], partitions: int) -> None:
    """Topics outside riverops' catalogue (faust's), created up front: Tansu would auto-create
    them with 4 partitions."""
    admin = AdminClient(settings.kafka_config())
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for future in futures.values():
        future.result(15)


def train_champion(train: int = 2000) -> Any:
    """The ``logreg`` spec trained one row at a time on ``train`` rows: every contender
    (limit, faust, riverops) starts from this same model."""
    model = get_spec("logreg").build(seed=1)
    xs = rows(train, seed=99)
    learn_in_order(model, xs, [label_of(x) for x in xs])
    return model


def register_champion(settings: Settings, *, train: int = 2000) -> Any:
    """Register :func:`train_champion`'s model as champion; returns the estimator."""
    model = train_champion(train)
    registry = Registry()
    records = register_trained(settings, registry, MODEL, model, spec_name="logreg",
                               stage="champion", by="bench", reason="bench champion",
                               seed=1, samples=train)
    publish_records(settings, records)
    return model


def preload(settings: Settings, topic: str, items: Sequence[tuple[str, bytes, int]],
            **producer_config: Any) -> float:
    """Produce pre-encoded (key, payload, timestamp) items and wait for every ack; seconds."""
    producer = make_producer(settings, **producer_config)
    started = time.perf_counter()
    for key, payload, timestamp in items:
        while True:
            try:
                producer.produce(topic, key=key, value=payload, timestamp=timestamp)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered to {topic}")
    return time.perf_counter() - started


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a ``riverops worker`` subprocess reads its settings from."""
    env = dict(os.environ)
    env.update({
        "RIVEROPS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "RIVEROPS_TOPIC_PREFIX": settings.topic_prefix,
        "RIVEROPS_PARTITIONS": str(settings.partitions),
        "RIVEROPS_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "RIVEROPS_SIGNING_KEY": SIGNING_KEY,
        "RIVEROPS_ARTIFACT_DIR": str(settings.artifact_dir),
        "RIVEROPS_STATE_DIR": str(settings.state_dir),
        "RIVEROPS_BATCH_SIZE": str(settings.batch_size),
        "RIVEROPS_PROCESSING_GUARANTEE": settings.processing_guarantee,
        "RIVEROPS_SCORER__EXPLAIN_TOP_K": str(settings.scorer.explain_top_k),
    })
    if settings.feature_schemas is not None:
        env["RIVEROPS_FEATURE_SCHEMAS"] = str(settings.feature_schemas)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return env


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process used so far (all its threads); 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Worker:
    """A worker subprocess; :meth:`stop` sends SIGTERM and keeps its peak RSS and log."""

    role: str
    process: subprocess.Popen[bytes]
    log_path: Path
    peak_rss: int = 0

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.role} worker exited with {self.process.returncode}: "
                               f"{self.log_tail()}")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.peak_rss = max(self.peak_rss, peak_rss(self.process.pid))
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_worker(settings: Settings, role: str, *, group_prefix: str,
                 command: list[str] | None = None, env: dict[str, str] | None = None) -> Worker:
    """``riverops worker ROLE`` (or ``command``) in the background, log kept for errors."""
    log_path = Path(settings.state_dir).parent / f"{role}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = command or [str(Path(sys.executable).parent / "riverops"), "worker", role,
                       "--no-metrics", "--log-level", "WARNING", "--group-prefix", group_prefix]
    env = dict(env or worker_env(settings))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Worker(role, process, log_path)


@dataclass
class Counter:
    """Counts the records of a topic as they become readable to a fresh consumer group."""

    settings: Settings
    topic: str
    consumer: Consumer = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.consumer = make_consumer(self.settings, f"bench-read-{uuid.uuid4().hex[:8]}")
        self.consumer.subscribe([self.topic])

    def wait_assigned(self, *, timeout: float = 60.0) -> None:
        """Poll until the group gave this reader its partitions: started before a worker,
        it then sees each output when it becomes readable, not in a burst after its own
        group join (which on Apache Kafka can outlast a small run)."""
        deadline = time.monotonic() + timeout
        while not self.consumer.assignment():
            self.poll(0.1)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: no partitions assigned after {timeout:.0f} s")

    def poll(self, timeout: float = 0.05) -> int:
        self.count += sum(1 for m in self.consumer.consume(10_000, timeout) if m.error() is None)
        return self.count

    def wait_for(self, expected: int, *, timeout: float, check: Callable[[], None] = lambda: None,
                 progress: Callable[[int], None] | None = None) -> float:
        """Poll until ``expected`` records were read; the perf_counter time it happened."""
        deadline = time.monotonic() + timeout
        report = progress or (lambda _: None)
        while self.poll() < expected:
            report(self.count)
            check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: {self.count} of {expected} records after "
                                   f"{timeout:.0f} s")
        report(self.count)
        return time.perf_counter()

    def close(self) -> None:
        self.consumer.close()



def time_outputs(worker: Worker, counter: Counter, *, warmup: int, events: int, timeout: float,
                 progress: Any = None, broker_pid: int | None = None,
                 attach: Callable[[list[Worker]], Callable[[], None]] | None = None
                 ) -> tuple[dict[str, Any], float]:
    """The clock of a one-worker bench: from ``warmup`` outputs readable to ``warmup +
    events``. The figures (events/s, the worker's and the broker's CPU per event, peak RSS)
    and the moment the clock started; the worker is stopped and the counter closed.
    ``attach`` (a profiler) is called with the worker when the clock starts; what it
    returns, when the clock stops."""
    try:
        started = counter.wait_for(warmup, timeout=timeout, check=worker.check, progress=progress)
        cpu_at_start = worker.cpu()
        broker_at_start = cpu_seconds(broker_pid) if broker_pid else 0.0
        detach = attach([worker]) if attach else None
        done = counter.wait_for(warmup + events, timeout=timeout, check=worker.check, progress=progress)
        if detach is not None:
            detach()
        cpu = (worker.cpu() - cpu_at_start) / events * 1e6
        broker_cpu = (cpu_seconds(broker_pid) - broker_at_start) / events * 1e6 if broker_pid else None
    finally:
        worker.stop()
        counter.close()
    return {"events_per_s": events / (done - started), "events": events,
            "seconds": done - started, "peak_rss": worker.peak_rss, "cpu_us_per_event": cpu,
            "broker_cpu_us_per_event": broker_cpu}, started
