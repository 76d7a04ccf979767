"""Soak: every role in one ``riverops worker all`` process on a fresh embedded broker, fed
at a steady rate for a long while; RSS and total consumer lag sampled every 10 s.

Run with ``make soak`` (10 minutes) or ``python -m bench.soak --seconds 60`` for a short
look. It writes a small Markdown report (``bench/results/soak.md`` by default). What it
is for: a leak (RSS that keeps climbing once the windows are full) or a lag that keeps
growing at a rate the workers should sustain. The embedded broker keeps every record in
memory, so its RSS grows with the stream by design; it is reported apart.

Lag is the committed offsets' distance to the log end, summed over groups, except the
joiner's on features and predictions: the joiner commits the offset of its *oldest
pending* event (its real position is in its checkpoint), so with 10% of the events never
labelled that committed offset stays at the first of them until the label TTL (7 days)
expires it. It is reported apart as ``joiner trail``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka.admin import AdminClient
from river.datasets import synth

from riverops.kafka.lag import LagProbe
from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records
from riverops.kafka.tansu import EmbeddedBroker
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


def report(samples: list[Sample], *, rate: float, seconds: float, code: int | None, drained: float | None,
           per_group: dict[str, int]) -> str:
    first, last = samples[0], samples[-1]
    settled = [s for s in samples if s.elapsed >= 60] or samples
    lines = [
        "# Soak run",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.soak --seconds {seconds:g} --rate {rate:g}`: "
        f"every role in one `riverops worker all` process, embedded broker, 2 partitions, "
        f"{last.sent} events (90% labelled).",
        "",
        f"- worker RSS: {first.worker_rss_mb:.0f} MB at start, {settled[0].worker_rss_mb:.0f} MB at "
        f"{settled[0].elapsed:.0f} s, {last.worker_rss_mb:.0f} MB at the end, max "
        f"{max(s.worker_rss_mb for s in samples):.0f} MB",
        f"- broker RSS (in-memory log, grows by design): {first.broker_rss_mb:.0f} -> {last.broker_rss_mb:.0f} MB",
        f"- lag over every group (joiner trail apart): max {max(s.lag for s in samples)}, last sample "
        f"{last.lag}; drained {f'in {drained:.1f} s after the producer stopped' if drained is not None else 'NOT within 120 s'}",
        f"- joiner trail (committed offset of the oldest pending event): last {last.joiner_trail}",
        f"- lag per group and topic at the end: {', '.join(f'{k} {v}' for k, v in sorted(per_group.items()))}",
        f"- worker exit code after SIGTERM: {code}",
        "",
        "| s | events sent | worker RSS MB | broker RSS MB | lag | joiner trail |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {s.elapsed:.0f} | {s.sent} | {s.worker_rss_mb:.0f} | {s.broker_rss_mb:.0f} | {s.lag} "
              f"| {s.joiner_trail} |" for s in samples]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="soak every role on the embedded broker")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=300.0, help="events per second")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.md"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="riverops-soak-"))
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
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
                   RIVEROPS_STATE_DIR=str(work / "state"))
        log = open(work / "worker.log", "ab")
        worker = subprocess.Popen(
            [sys.executable, "-c", "from riverops.cli.main import main; main()", "worker", "all", "--no-metrics",
             "--group-prefix", GROUP_PREFIX], env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(8)  # the groups form
        sent, stop = [0], threading.Event()
        producer = threading.Thread(target=produce, args=(settings, args.rate, args.seconds, sent, stop))
        samples: list[Sample] = []
        started = time.monotonic()
        producer.start()
        drained: float | None = None
        lag, trail = 0, 0
        per_group: dict[str, int] = {}
        with LagProbe(settings, group_prefix=GROUP_PREFIX) as probe:
            try:
                while producer.is_alive() and worker.poll() is None:
                    time.sleep(max(0.0, args.every - (time.monotonic() - started) % args.every))
                    lag, trail, per_group = lag_split(probe)
                    samples.append(Sample(time.monotonic() - started, sent[0], rss_mb(worker.pid),
                                          rss_mb(broker.pid), lag, trail))
                    print(samples[-1], flush=True)
                stopped = time.monotonic()
                while worker.poll() is None and time.monotonic() - stopped < 120:
                    lag, trail, per_group = lag_split(probe)
                    if lag == 0:
                        drained = time.monotonic() - stopped
                        break
                    time.sleep(1)
                samples.append(Sample(time.monotonic() - started, sent[0], rss_mb(worker.pid),
                                      rss_mb(broker.pid), lag, trail))
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(samples, rate=args.rate, seconds=args.seconds, code=worker.returncode,
                               drained=drained, per_group=per_group))
    print(f"report: {args.out} (worker log {work / 'worker.log'})")
    return 0 if worker.returncode == 0 and drained is not None else 1


if __name__ == "__main__":
    sys.exit(main())
