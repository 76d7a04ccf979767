"""Soak: every role in one ``riverops worker all`` process on a fresh broker, fed at a
steady rate for a long while; RSS, total consumer lag and the joiner's pending items sampled
every 10 s.

Run with ``make soak`` (30 minutes on a one-node Apache Kafka, the joiner spilling past
5,000 pending events per partition so that its file is used) or ``python -m bench.soak
--seconds 120`` for a short look; ``--broker tansu`` runs on the embedded broker instead
(the worker runs exactly once on Kafka unless ``--env RIVEROPS_PROCESSING_GUARANTEE=...``
says otherwise, at least once on Tansu). It writes a Markdown report
(``bench/results/soak.md`` by default: the figures, the size of every bounded structure
from ``riverops_state_entries``, the audit of the outputs) and a PNG of RSS, lag and
pending events beside it, and prints whether worker RSS stayed within 5% over the last
two thirds. What it is for: a leak (worker RSS that keeps climbing once the windows are full) or a lag that
keeps growing at a rate the workers should sustain. The embedded broker keeps every record
in memory, so its RSS grows with the stream by design; Kafka's is a JVM's. Either is
reported apart from the worker's.

Lag is the committed offsets' distance to the log end, summed over groups, except the
joiner's on features and predictions, reported apart as ``joiner trail``: until
2026-12-03 the joiner committed the offset of its oldest *pending* event at least once, so
that figure stayed at the first unlabelled event until the label TTL expired it. Now the
joiner commits what it consumed under both guarantees (its state is in its changelog), and
the trail is lag like any other.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families
from river.datasets import synth

from riverops.audit import AuditReport, audit
from riverops.kafka.cluster import KafkaCluster
from riverops.kafka.lag import LagProbe
from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records
from riverops.kafka.tansu import EmbeddedBroker, free_port
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.settings import Settings

GROUP_PREFIX = "soak"


@dataclass
class Sample:
    elapsed: float
    sent: int
    worker_rss_mb: float
    broker_rss_mb: float
    lag: int
    joiner_trail: int
    pending: int | None  # riverops_join_pending_items (None: /metrics did not answer)
    spill_mb: float  # size of the joiner's scratch spill files
    state: dict[str, int]  # riverops_state_entries by structure (the largest over roles)


def lag_split(probe: LagProbe) -> tuple[int, int, dict[str, int]]:
    """(processing lag, joiner trail, lag per group and topic)."""
    per: dict[str, int] = {}
    lag = trail = 0
    for row in probe.sample():
        name = f"{row.group} {row.topic}"
        per[name] = per.get(name, 0) + row.lag
        if row.group.endswith("-joiner") and row.topic.endswith(("features", "predictions")):
            trail += row.lag
        else:
            lag += row.lag
    return lag, trail, per


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def scrape(url: str) -> tuple[int | None, dict[str, int]]:
    """The joiner's pending items and the entries of every bounded structure
    (``riverops_state_entries``, the largest over roles), from the worker's /metrics."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None, {}
    pending, state = None, {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "riverops_join_pending_items" and sample.labels.get("role") == "joiner":
                pending = int(sample.value)
            elif sample.name == "riverops_state_entries":
                name = sample.labels["structure"]
                state[name] = max(state.get(name, 0), int(sample.value))
    return pending, state


STRUCTURES = ("join_pending_memory", "join_pending_disk", "join_done_memory", "join_done_disk",
              "monitor_dedupe_ids", "learner_dedupe_ids", "monitor_window_keys", "registry_versions",
              "registry_artifacts")
"""The bounded structures the report shows, in its columns (docs/reliability.md, Memory bounds)."""


def rss_verdict(samples: list[Sample], seconds: float) -> tuple[float, bool]:
    """Growth of worker RSS over the last two thirds of the run (its largest sample there
    against the first one), and whether it stayed within 5%."""
    tail = [s for s in samples if seconds / 3 <= s.elapsed <= seconds + 1]
    if len(tail) < 2:
        return float("nan"), False
    growth = max(s.worker_rss_mb for s in tail) / tail[0].worker_rss_mb - 1
    return growth, growth <= 0.05


def plot(samples: list[Sample], path: Path) -> None:
    """RSS, lag and pending events over time, one panel each (PNG)."""
    from matplotlib.figure import Figure

    minutes = [s.elapsed / 60 for s in samples]
    figure = Figure(figsize=(9, 8), layout="constrained")
    rss, lag, pending = figure.subplots(3, 1, sharex=True)
    rss.plot(minutes, [s.worker_rss_mb for s in samples], label="worker")
    rss.plot(minutes, [s.broker_rss_mb for s in samples], label="broker", alpha=0.6)
    rss.set_ylabel("RSS (MB)")
    rss.legend(loc="upper left")
    lag.plot(minutes, [s.lag for s in samples], label="lag (every group)")
    lag.plot(minutes, [s.joiner_trail for s in samples], label="joiner trail", alpha=0.6)
    lag.set_ylabel("records")
    lag.legend(loc="upper left")
    for name, label in (("join_pending_memory", "pending in memory"), ("join_pending_disk", "pending on disk")):
        pending.plot(minutes, [s.state.get(name, 0) for s in samples], label=label)
    pending.set_ylabel("events")
    pending.set_xlabel("minutes")
    pending.legend(loc="upper left")
    figure.savefig(path, dpi=90)


def spill_mb(state_dir: Path) -> float:
    """MB of the joiner's spill files (SQLite; made when a partition is assigned)."""
    total = 0
    for path in state_dir.rglob("*.spill.sqlite"):
        try:
            total += path.stat().st_size
        except OSError:
            pass  # a revoked partition's file, gone meanwhile
    return total / 2**20


def growth_per_10_min(samples: list[Sample], since: float) -> float:
    """Least-squares slope of worker RSS from ``since`` seconds on, in MB per 10 minutes."""
    tail = [s for s in samples if s.elapsed >= since]
    if len(tail) < 3:
        return float("nan")
    return 600 * statistics.linear_regression([s.elapsed for s in tail], [s.worker_rss_mb for s in tail]).slope


def register_champion(settings: Settings) -> None:
    model = get_spec("logreg").build(seed=1)
    rows = [(x, bool(y)) for x, y in synth.Agrawal(classification_function=0, seed=1).take(500)]
    learn_in_order(model, [x for x, _ in rows], [y for _, y in rows])
    records = register_trained(settings, Registry(), "fraud", model, spec_name="logreg", stage="champion",
                               by="soak", reason="soak champion", seed=1, samples=len(rows))
    publish_records(settings, records)


def produce(settings: Settings, rate: float, seconds: float, sent: list[int], stop: threading.Event) -> None:
    """``rate`` events/s, 90% labelled 2 s of event time later, for ``seconds``."""
    stream = synth.Agrawal(classification_function=0, seed=42)
    t0 = datetime.now(UTC)
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for i, (x, y) in enumerate(stream):
            if stop.is_set() or time.monotonic() - started >= seconds:
                break
            when = t0 + timedelta(seconds=i / rate)
            producer.send_features(event_id=f"s{i}", model="fraud", entity_id=f"c{i % 1000}", features=x,
                                   event_time=when)
            if i % 10 != 7:
                producer.send_label(event_id=f"s{i}", model="fraud", label=bool(y),
                                    label_time=when + timedelta(seconds=2))
            sent[0] = i + 1
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def report(samples: list[Sample], *, command: str, broker: str, guarantee: str, extra_env: dict[str, str],
           seconds: float, code: int | None, drained: float | None, per_group: dict[str, int]) -> str:
    first, last = samples[0], samples[-1]
    settled = [s for s in samples if s.elapsed >= 60] or samples
    running = [s for s in samples if s.elapsed <= seconds + 1]  # not the sample after the drain
    engine = "one-node Apache Kafka (KRaft)" if broker == "kafka" else "embedded broker (Tansu)"
    broker_rss = "a JVM outside the worker" if broker == "kafka" else "in-memory log, grows by design"
    pending = [s.pending for s in samples if s.pending is not None]
    since = max(seconds - 1200, seconds / 3)  # the last 20 minutes, or the last two thirds
    growth, flat = rss_verdict(samples, seconds)
    lines = [
        "# Soak run",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.soak {command}`: every role in one "
        f"`riverops worker all` process, {engine}, 2 partitions, processing guarantee {guarantee}, "
        f"{last.sent} events (90% labelled). Extra worker environment: "
        f"{', '.join(f'`{k}={v}`' for k, v in extra_env.items()) or 'none'}.",
        "",
        f"- **worker RSS within 5% over the last two thirds: {'yes' if flat else 'NO'}** "
        f"({growth:+.1%}, its largest sample after {seconds / 3:.0f} s against the first)",
        f"- worker RSS growth from {since:.0f} s to the end (least squares): "
        f"{growth_per_10_min(running, since):.1f} MB per 10 minutes",
        f"- worker RSS: {first.worker_rss_mb:.0f} MB at start, {settled[0].worker_rss_mb:.0f} MB at "
        f"{settled[0].elapsed:.0f} s, {last.worker_rss_mb:.0f} MB at the end, max "
        f"{max(s.worker_rss_mb for s in samples):.0f} MB",
        f"- broker RSS ({broker_rss}): {first.broker_rss_mb:.0f} -> {last.broker_rss_mb:.0f} MB",
        f"- joiner pending items (Prometheus): max {max(pending, default=0)}, last "
        f"{pending[-1] if pending else 'unread'}; spill files {last.spill_mb:.1f} MB at the end",
        f"- lag over every group (joiner trail apart): max {max(s.lag for s in samples)}, last sample "
        f"{last.lag}; drained {f'in {drained:.1f} s after the producer stopped' if drained is not None else 'NOT within 120 s'}",
        f"- joiner trail (committed offset of the oldest pending event): last {last.joiner_trail}",
        f"- lag per group and topic at the end: {', '.join(f'{k} {v}' for k, v in sorted(per_group.items()))}",
        f"- worker exit code after SIGTERM: {code}",
        "",
        "Bounded structures at the end (`riverops_state_entries`, the largest over roles): "
        + ", ".join(f"{name} {last.state.get(name, '-')}" for name in STRUCTURES) + ".",
        "",
        "| s | events sent | worker RSS MB | broker RSS MB | lag | joiner trail | pending | spill MB | "
        + " | ".join(STRUCTURES) + " |",
        "|" + "---:|" * (8 + len(STRUCTURES)),
    ]
    lines += [f"| {s.elapsed:.0f} | {s.sent} | {s.worker_rss_mb:.0f} | {s.broker_rss_mb:.0f} | {s.lag} "
              f"| {s.joiner_trail} | {s.pending if s.pending is not None else '-'} | {s.spill_mb:.1f} | "
              + " | ".join(str(s.state.get(name, "-")) for name in STRUCTURES) + " |"
              for s in samples]
    return "\n".join(lines) + "\n"


def _audited(checked: AuditReport | None, guarantee: str) -> str:
    """The audit of the topics at the end (read_committed): lost and repeated outputs."""
    if checked is None:
        return "\n## Audit\n\nnot run: the outputs did not drain\n"
    note = ("" if guarantee == "exactly_once" else
            "\nAt least once, repeats after a restart are expected (the monitor drops them by id).\n")
    return (f"\n## Audit (read_committed, after the drain)\n\n{checked.markdown()}\n{note}"
            f"\nevery check exact: {'yes' if checked.exact else 'NO'}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="soak every role on a fresh broker")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="kafka",
                        help="tansu: the embedded broker; kafka: a one-node Apache Kafka from the cached jars")
    parser.add_argument("--seconds", type=float, default=1800.0, help="how long the producer runs")
    parser.add_argument("--rate", type=float, default=300.0, help="events per second")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the worker, e.g. RIVEROPS_JOINER__MEMORY_EVENTS=5000 (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.md"))
    args = parser.parse_args(argv)
    if bad := [item for item in args.env if "=" not in item]:
        parser.error(f"--env takes KEY=VALUE, not {bad[0]!r}")
    extra_env = dict(item.split("=", 1) for item in args.env)
    # the worker's rule (riverops.cli.common.for_broker): exactly once unless the broker is Tansu
    guarantee = extra_env.get("RIVEROPS_PROCESSING_GUARANTEE",
                              "exactly_once" if args.broker == "kafka" else "at_least_once")
    work = Path(tempfile.mkdtemp(prefix="riverops-soak-"))
    broker = (KafkaCluster(data_dir=work / "kafka") if args.broker == "kafka"
              else EmbeddedBroker(log_path=work / "broker.log"))
    metrics_port = free_port()
    try:
        with broker:
            settings = Settings(
                bootstrap_servers=broker.bootstrap_servers, topic_prefix="soak.", partitions=2,
                session_timeout_ms=6000, signing_key="soak-signing-key",  # type: ignore[arg-type]
                artifact_dir=work / "artifacts", state_dir=work / "state",
            )
            create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
            register_champion(settings)
            env = {k: v for k, v in os.environ.items() if not k.startswith("RIVEROPS_")}
            env.update(RIVEROPS_BOOTSTRAP_SERVERS=settings.bootstrap_servers, RIVEROPS_TOPIC_PREFIX="soak.",
                       RIVEROPS_PARTITIONS="2", RIVEROPS_SESSION_TIMEOUT_MS="6000",
                       RIVEROPS_SIGNING_KEY="soak-signing-key", RIVEROPS_ARTIFACT_DIR=str(work / "artifacts"),
                       RIVEROPS_STATE_DIR=str(work / "state"), RIVEROPS_METRICS_PORT=str(metrics_port))
            env.update(extra_env)
            log = open(work / "worker.log", "ab")
            worker = subprocess.Popen(
                [sys.executable, "-c", "from riverops.cli.main import main; main()", "worker", "all",
                 "--group-prefix", GROUP_PREFIX], env=env, stdout=log, stderr=subprocess.STDOUT)

            def sample(lag: int, trail: int) -> Sample:
                pending, state = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
                return Sample(time.monotonic() - started, sent[0], rss_mb(worker.pid), rss_mb(broker.pid), lag,
                              trail, pending, spill_mb(work / "state"), state)

            time.sleep(8)  # the groups form
            sent, stop = [0], threading.Event()
            producer = threading.Thread(target=produce, args=(settings, args.rate, args.seconds, sent, stop))
            samples: list[Sample] = []
            started = time.monotonic()
            producer.start()
            drained: float | None = None
            lag, trail = 0, 0
            per_group: dict[str, int] = {}
            checked: AuditReport | None = None
            with LagProbe(settings, group_prefix=GROUP_PREFIX) as probe:
                try:
                    while producer.is_alive() and worker.poll() is None:
                        time.sleep(max(0.0, args.every - (time.monotonic() - started) % args.every))
                        lag, trail, per_group = lag_split(probe)
                        samples.append(sample(lag, trail))
                        print(samples[-1], flush=True)
                    stopped = time.monotonic()
                    while worker.poll() is None and time.monotonic() - stopped < 120:
                        lag, trail, per_group = lag_split(probe)
                        if lag == 0:
                            drained = time.monotonic() - stopped
                            break
                        time.sleep(1)
                    samples.append(sample(lag, trail))
                    if drained is not None:  # every output out: count what the topics hold
                        time.sleep(3)  # the monitor's last metrics after the last feedback
                        checked = audit(settings, timeout=120)
                finally:
                    stop.set()
                    producer.join()
                    if worker.poll() is None:
                        worker.terminate()
                        try:
                            worker.wait(60)
                        except subprocess.TimeoutExpired:
                            worker.kill()
                            worker.wait(10)
                    log.close()
    finally:
        if isinstance(broker, KafkaCluster):  # keep the broker's log, not its topics
            if broker.log_path.exists():
                shutil.copy(broker.log_path, work / "broker.log")
            shutil.rmtree(broker.data_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(report(samples, command=command, broker=args.broker, guarantee=guarantee,
                               extra_env=extra_env, seconds=args.seconds, code=worker.returncode,
                               drained=drained, per_group=per_group) + _audited(checked, guarantee))
    plot(samples, args.out.with_suffix(".png"))
    growth, flat = rss_verdict(samples, args.seconds)
    print(f"worker RSS within 5% over the last two thirds: {'yes' if flat else 'NO'} ({growth:+.1%})")
    print(f"report: {args.out}, plot {args.out.with_suffix('.png')} (worker log {work / 'worker.log'}, "
          f"broker log {work / 'broker.log'})")
    return 0 if worker.returncode == 0 and drained is not None else 1


if __name__ == "__main__":
    sys.exit(main())
