"""Issue 15's faults, one after another in ONE labelled stream on a three-node Apache Kafka
(replication factor 3, min.insync.replicas 2), the workers real ``riverops worker``
processes (scorer x2, joiner x2, monitor): kill -9 of a scorer (restarted at once, as a
supervisor would), kill -9 of one of the two joiners (not restarted: the other takes its
partitions), a third scorer joining, kill -9 of the broker that leads most features
partitions and its restart, SIGSTOP of a broker for 20 s. Then the checker
(:func:`riverops.audit.audit`, read_committed) must find every event scored once, every
labelled event joined once, nothing lost, the monitor's count exact, the registry as it
was.

One table row per fault is printed (not asserted: timings): events produced so far, the
events sent in its window that were lost, the repeats that arrived in its window, the
longest output stall on any partition and when outputs moved again on every partition.
Outputs are timed per partition of their event's features (a read_committed reader of
its own), so a stall of some partitions shows while the others flow.

Under RIVEROPS_PROCESSING_GUARANTEE=at_least_once the kills leave repeats and this test
fails: that is the checker's proof that it can fail. Size: 200 events/s (each with its
label) for about two minutes, about four minutes in all on two cores.
"""

from __future__ import annotations

import bisect
import collections
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from riverops.audit import AuditReport, audit
from riverops.kafka.clients import make_admin, make_consumer, make_producer
from riverops.kafka.cluster import KafkaCluster
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.settings import Settings

from ..conftest import ENGINE, broker_dir
from .champion import register_champion
from .conftest import send_labelled_at_rate
from .procs import start_worker_process, stop_process
from .test_broker_restart import _port_below_ephemeral_range

pytestmark = [
    pytest.mark.faults,
    pytest.mark.timeout(480),
    pytest.mark.skipif(ENGINE != "kafka", reason="starts a three-node Apache Kafka itself: the Kafka pass runs it"),
]
RATE, PARTITIONS = 200, 4

GRACE = 0.5  # outputs of the last batches before a fault may still arrive this late
SETTLE = 5.0  # steady output between two faults
KINDS = ("predictions", "feedback")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three nodes whose ports lie below the ephemeral range (a killed node's port could
    otherwise be taken by a client's reconnect and block its restart)."""
    taken: set[int] = set()

    def port(_host: str = "127.0.0.1") -> int:
        while (chosen := _port_below_ephemeral_range()) in taken:
            pass
        taken.add(chosen)
        return chosen

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("riverops.kafka.cluster.free_port", port)
        kafka = KafkaCluster(nodes=3, data_dir=broker_dir(tmp_path_factory.mktemp("eos")))
    kafka.start(timeout=150)
    try:
        yield kafka
    finally:
        kafka.remove()


class Outputs:
    """Predictions and feedback as read_committed readers see them: arrival time, the
    features partition of the event, and whether it repeats an output already seen."""

    def __init__(self, settings: Settings) -> None:
        catalogue = TopicCatalogue.from_settings(settings)
        self.settings = settings
        self.kinds = {catalogue.name(k): k for k in ("features", *KINDS)}
        self.partition_of: dict[str, int] = {}
        self.times: dict[str, list[float]] = {k: [] for k in KINDS}
        self.arrivals: dict[str, list[tuple[float, int, bool]]] = {k: [] for k in KINDS}
        self.ids: dict[str, set[str]] = {k: set() for k in KINDS}
        self._seen: dict[str, set[Any]] = {k: set() for k in KINDS}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        codec = self.settings.codec()
        consumer = make_consumer(self.settings, f"outputs-{uuid.uuid4().hex[:6]}",
                                 **{"isolation.level": "read_committed"})
        metadata = consumer.list_topics(timeout=15)
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING)
                         for name in self.kinds for p in metadata.topics[name].partitions])
        try:
            while not self.stop.is_set():
                for message in consumer.consume(2000, 0.1):
                    if message.error() is not None:
                        continue
                    kind, now = self.kinds[message.topic() or ""], time.monotonic()
                    if kind == "features":
                        self.partition_of[message.key().decode()] = message.partition() or 0
                        continue
                    if kind == "predictions":
                        record = codec.decode("PredictionEvent", message.value())
                        key: Any = (record["event_id"], record["variant"], record["version"])
                    else:
                        record = codec.decode("FeedbackEvent", message.value())
                        key = record["event_id"]
                    eid = record["event_id"]
                    self.arrivals[kind].append((now, self.partition_of.get(eid, -1), key in self._seen[kind]))
                    self.times[kind].append(now)
                    self._seen[kind].add(key)
                    self.ids[kind].add(eid)
        finally:
            consumer.close()

    def moved_again(self, since: float) -> float | None:
        """Seconds after ``since`` until every partition had an output of each kind after
        ``since + GRACE`` (None: not yet)."""
        latest = since
        for kind in KINDS:
            times, arrivals = list(self.times[kind]), list(self.arrivals[kind])
            first: dict[int, float] = {}
            for at, partition, _ in arrivals[bisect.bisect_right(times, since + GRACE):]:
                first.setdefault(partition, at)
                if len(first.keys() - {-1}) == PARTITIONS:
                    break
            if len(first.keys() - {-1}) < PARTITIONS:
                return None
            latest = max(latest, *(v for p, v in first.items() if p != -1))
        return latest - since

    def longest_stall(self, start: float, end: float) -> float:
        """The longest time in [start, end) that one partition went without an output."""
        stall = 0.0
        for kind in KINDS:
            last: dict[int, float] = {}
            for at, partition, _ in list(self.arrivals[kind]):
                if start <= at < end and partition in last:
                    stall = max(stall, at - max(last[partition], start))
                last[partition] = at
        return stall

    def repeats(self, kind: str, start: float, end: float) -> int:
        return sum(1 for at, _, repeat in list(self.arrivals[kind]) if repeat and start <= at < end)


@dataclass
class Fault:
    name: str
    at: float
    sent: int
    moved_again: float | None = None
    note: str = ""


def _wait_moving(outputs: Outputs, since: float, supervise: Callable[[], None], timeout: float = 45) -> float | None:
    deadline = time.monotonic() + timeout
    while (moved := outputs.moved_again(since)) is None and time.monotonic() < deadline:
        supervise()
        time.sleep(0.2)
    return moved


def _features_leader(settings: Settings) -> int:
    """The broker that leads most partitions of the features topic."""
    name = TopicCatalogue.from_settings(settings).name("features")
    topic = make_admin(settings).list_topics(name, timeout=15).topics[name]
    return Counter(p.leader for p in topic.partitions.values()).most_common(1)[0][0]


def _pid(cluster: KafkaCluster, node: int) -> int:
    process = cluster._node(node).process  # the cluster names only node 1's pid
    assert process is not None
    return process.pid


def _warm_transactions(settings: Settings) -> None:
    """The first transactional producer makes ``__transaction_state`` (50 partitions, 3
    replicas each): made before the workers start, so it is not timed as their start."""
    producer = make_producer(settings, **{"transactional.id": f"warm-{uuid.uuid4().hex[:6]}"})
    producer.init_transactions(120)
    producer.flush(5)


def _check_replication(settings: Settings) -> None:
    admin = make_admin(settings)
    names = [spec.name for spec in TopicCatalogue.from_settings(settings)]
    deadline = time.monotonic() + 30
    while not set(names) <= set((metadata := admin.list_topics(timeout=15)).topics) and time.monotonic() < deadline:
        time.sleep(0.2)  # a node that answers metadata learns of new topics a moment later
    assert {len(p.replicas) for n in names for p in metadata.topics[n].partitions.values()} == {3}
    resource = ConfigResource("topic", names[0])
    config = admin.describe_configs([resource])[resource].result(15)
    assert config["min.insync.replicas"].value == "2"


def _table(faults: list[Fault], outputs: Outputs, sent: int, end: float) -> str:
    rows = ["| fault | at s | events produced so far | lost (predictions, feedback) | repeats arrived "
            "(predictions, feedback) | longest stall s | outputs moved again on every partition after s |",
            "|---|---|---|---|---|---|---|"]
    windows, ends = [Fault("(before the faults)", 0.0, 0), *faults], [*faults, Fault("", end, sent)]
    for fault, after in zip(windows, ends, strict=True):
        indices = range(fault.sent, after.sent)
        lost = [sum(1 for i in indices if f"e{i}" not in outputs.ids[k]) for k in KINDS]
        repeats = [outputs.repeats(k, fault.at, after.at) for k in KINDS]
        at = f"{fault.at - faults[0].at:.0f}" if fault.at else ""
        moved = "" if fault.moved_again is None else f"{fault.moved_again:.1f}"
        rows.append(f"| {fault.name}{fault.note} | {at} | {fault.sent} | {lost[0]}, {lost[1]} | {repeats[0]}, {repeats[1]} "
                    f"| {outputs.longest_stall(fault.at, after.at):.1f} | {moved} |")
    return "\n".join(rows)


def test_exactly_once_through_worker_and_broker_faults(cluster: KafkaCluster, tmp_path: Path) -> None:
    settings = Settings(
        bootstrap_servers=cluster.bootstrap_servers, topic_prefix=f"eos-{uuid.uuid4().hex[:8]}.",
        partitions=PARTITIONS, replication_factor=3, session_timeout_ms=6000,
        signing_key="eos-key",  # type: ignore[arg-type]
        artifact_dir=tmp_path / "artifacts", state_dir=tmp_path / "state",
        joiner={"checkpoint_seconds": 0.5},
        monitor={"emit_seconds": 0.5, "window_size": 10**6, "time_window": 10**9,
                 "data_drift": {"enabled": False}},
    )
    guarantee = getattr(settings, "processing_guarantee", "at_least_once (the setting does not exist)")
    create_topics(make_admin(settings), TopicCatalogue.from_settings(settings))
    _check_replication(settings)
    _warm_transactions(settings)
    register_champion(settings)
    prefix, log = f"eos-{uuid.uuid4().hex[:6]}", tmp_path / "workers.log"

    def start(role: str) -> Any:
        return start_worker_process(settings, role, group_prefix=prefix, log=log)

    def started(role: str) -> Any:
        """A worker, once it is up (its guarantee logged): five Python processes importing
        at once beside three starting brokers starved the brokers' heartbeats on two cores
        (sessions timed out, the groups kept rebalancing, nothing moved for 120 s)."""
        before = log.read_text().count("processing guarantee") if log.exists() else 0
        process, deadline = start(role), time.monotonic() + 30
        while (not log.exists() or log.read_text().count("processing guarantee") == before) \
                and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        return process

    workers = {"joiner": [started("joiner"), started("joiner")], "monitor": [started("monitor")],
               "scorer": [started("scorer"), started("scorer")]}
    crashes: list[str] = []  # workers that exited by themselves (restarted, as a supervisor would)

    def supervise() -> None:
        for role, processes in workers.items():
            for i, process in enumerate(processes):
                if process.poll() is not None:
                    crashes.append(f"{role} exited with {process.returncode} {time.monotonic() - began:.0f} s in")
                    processes[i] = start(role)

    outputs = Outputs(settings)
    sent, stop, send_errors = [0], threading.Event(), []

    def send() -> None:
        try:
            send_labelled_at_rate(settings, rate=RATE, count=10**7, t0=datetime.now(UTC), seed=15,
                                  sent=sent, stop=stop)
        except BaseException as exc:
            send_errors.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    faults: list[Fault] = []
    frozen: int | None = None
    report: AuditReport | None = None
    began = stream_end = time.monotonic()

    def fault(name: str) -> Fault:
        supervise()
        faults.append(Fault(name, time.monotonic(), sent[0]))
        return faults[-1]

    def kill(process: Any) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def moving(since: float) -> float | None:
        return _wait_moving(outputs, since, supervise)

    try:
        time.sleep(8)  # the groups form
        sender.start()
        assert _wait_moving(outputs, time.monotonic(), supervise, 120) is not None, "no outputs on every partition"
        time.sleep(SETTLE)

        current = fault("kill -9 of a scorer (restarted)")
        kill(workers["scorer"][0])
        workers["scorer"][0] = start("scorer")
        current.moved_again = moving(current.at)
        time.sleep(SETTLE)

        current = fault("kill -9 of one of two joiners")
        kill(workers["joiner"].pop())
        current.moved_again = moving(current.at)
        time.sleep(SETTLE)

        current = fault("a third scorer joins")
        workers["scorer"].append(start("scorer"))
        time.sleep(SETTLE)  # it imports, joins, the group rebalances
        current.moved_again = moving(current.at)

        leader = _features_leader(settings)
        current = fault(f"kill -9 of broker {leader} (leads the features)")
        cluster.stop_node(leader, kill=True)
        current.moved_again = moving(current.at)
        time.sleep(SETTLE)
        current = fault(f"restart of broker {leader}")
        cluster.start_node(leader)
        current.moved_again = moving(current.at)
        time.sleep(SETTLE)

        frozen = _features_leader(settings)
        current = fault(f"SIGSTOP of broker {frozen} for 20 s")
        os.kill(_pid(cluster, frozen), signal.SIGSTOP)
        time.sleep(20)
        os.kill(_pid(cluster, frozen), signal.SIGCONT)
        frozen = None
        thawed = time.monotonic()
        current.moved_again = moving(current.at)
        after_thaw = moving(thawed)
        current.note = f" (every partition moved {after_thaw:.1f} s after SIGCONT)" if after_thaw is not None else ""
        time.sleep(SETTLE)

        stop.set()
        sender.join(60)
        stream_end = time.monotonic()
        everything = {f"e{i}" for i in range(sent[0])}
        deadline = time.monotonic() + 60
        while any(not everything <= outputs.ids[k] for k in KINDS) and time.monotonic() < deadline:
            supervise()
            time.sleep(0.5)
        time.sleep(2)  # the monitor's last metrics (every 0.5 s) after the last feedback
        supervise()
        report = audit(settings, timeout=60)
        for _ in range(2):  # a count still short (not repeats: those never go away) may be late
            if report.monitor_exact and report.predictions.lost == report.feedback.lost == 0:
                break
            time.sleep(3)
            report = audit(settings, timeout=60)
    finally:
        if frozen is not None:
            os.kill(_pid(cluster, frozen), signal.SIGCONT)
        stop.set()
        if report is None or not report.exact:  # where each worker is, in the log (riverops worker's SIGUSR1)
            for process in (p for processes in workers.values() for p in processes if p.poll() is None):
                process.send_signal(signal.SIGUSR1)
            time.sleep(1)
        codes = [stop_process(p) for processes in workers.values() for p in processes]
        outputs.stop.set()
        outputs.thread.join(10)
        total = sent[0]
        if faults:
            text = log.read_text()
            restores = [line[24:] for line in text.splitlines() if "restored from" in line]
            fatal = [line[:400] for line in text.splitlines() if " CRITICAL " in line]
            print(f"\nprocessing guarantee: {guarantee}; {RATE} events/s with labels, {total} events, "
                  f"{PARTITIONS} partitions, {stream_end - faults[0].at:.0f} s from the first fault to the end\n"
                  f"{_table(faults, outputs, total, stream_end + 60)}\n"
                  f"\nchecker (read_committed):\n{report.markdown() if report else '(not run)'}\n"
                  f"\nworkers that exited by themselves: {crashes or 'none'}\n" + "\n".join(fatal[:12]) +
                  f"\njoiner restores ({len(restores)}):\n" + "\n".join(restores[-8:]))
            missing = [i for i in range(total) if f"e{i}" not in outputs.ids["feedback"]]
            if missing or report is None or not report.exact:
                partitions = collections.Counter(outputs.partition_of.get(f"e{i}", -1) for i in missing)
                print(f"\nevents without feedback in the live view: {len(missing)}"
                      + (f" (e{missing[0]}..e{missing[-1]}, by features partition {dict(partitions)})"
                         if missing else "") + "\nwhat the workers warned of:\n"
                      + "\n".join(line[:300] for line in text.splitlines()
                                  if " WARNING " in line or " ERROR " in line)[-8000:]
                      + "\nwhere the workers were (SIGUSR1):\n"
                      + "\n".join(line for line in text.splitlines()
                                  if line.startswith(("Thread 0x", "Current thread", '  File "')))[-12000:])
        else:  # it failed before the first fault: what the workers said
            moved = {kind: sorted({p for _, p, _ in outputs.arrivals[kind]}) for kind in KINDS}
            print(f"\nbefore the first fault: {sent[0]} events sent, outputs on partitions {moved}, "
                  f"workers that exited by themselves: {crashes or 'none'}\n"
                  + "\n".join(line[:300] for line in log.read_text().splitlines()
                              if " WARNING " in line or " ERROR " in line or " CRITICAL " in line)[-6000:])

    assert report is not None
    assert not send_errors, send_errors
    assert report.features == total and report.labelled == total
    assert report.unread == {} and report.undecodable == {}, (report.unread, report.undecodable)
    assert report.predictions.lost == 0 and report.feedback.lost == 0, report.markdown()
    assert report.predictions.duplicated == 0 and report.feedback.duplicated == 0, report.markdown()
    assert report.predictions.exact and report.feedback.exact, report.markdown()
    assert report.monitor_exact and set(report.monitor) == {("fraud", 1, "champion")}, report.markdown()
    assert report.registry == {("fraud", 1)} and report.dead_letters == 0, report.markdown()
    assert not crashes, f"workers exited by themselves: {crashes}"
    assert codes == [0] * len(codes), log.read_text()[-3000:]
