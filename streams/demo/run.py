"""``make demo``: the whole loop on an embedded broker, with a live view, a summary and a plot.

It starts a broker (unless ``--bootstrap-servers``), creates the topics, trains and
registers an initial champion on a warm-up stream, starts every worker role in this
process, and replays the synthetic card-transaction stream (``streams/demo/cardgen.py``) with
late labels and a change of fraud pattern partway through. At the end it reads the
metrics, drift and registry topics back and writes a PNG plot and a summary.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.live import Live
from rich.table import Table

from riverops.cli.status import read_to_end
from riverops.demo.cardgen import CardStream, merged_events
from riverops.demo.live import render_live, take_snapshot
from riverops.demo.plot import plot_rolling_metrics
from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records
from riverops.kafka.tansu import EmbeddedBroker, free_port
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.drift import DataDriftOptions
from riverops.roles.monitor import MonitorCore
from riverops.settings import Settings
from riverops.worker import ALL_ROLES, run_roles

__all__ = ["DemoOptions", "DemoResult", "run_demo", "recovery"]


@dataclass(frozen=True)
class DemoOptions:
    events: int = 60_000
    rate: float = 1_000.0  # feature events per second offered
    seed: int = 42
    drift_at: int | None = None  # default: 40% of the events
    warmup: int = 20_000  # > 3 simulated days: a model that never saw a night fails at night
    duration: float = 240.0  # seconds at most for streaming and draining
    output: Path = Path("demo-output")
    bootstrap_servers: str | None = None
    live: bool | None = None  # default: when the console is a terminal


@dataclass
class DemoResult:
    events: int
    labels: int
    predictions: int
    feedback: int
    drift_alarms: int
    versions: int
    promotions: int
    dead_letters: int
    seconds: float
    plot: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    recovery: tuple[float, float, int] | None = None
    worker_failed: bool = False  # a role stopped with an error (its log says why)


DAY_EVENTS = 6_000  # one simulated day of the card stream (2,000 cards x 3 purchases)


def _role_options() -> dict[str, dict[str, Any]]:
    """The demo's settings of the roles, sized to the stream's daily cycle: a retrain
    window, the feedback awaited after a drift alarm and the data-drift windows each hold
    a simulated day or more, so that every hour is in them (a model trained on daytime
    only misjudges the night; a daytime reference makes every night a data drift)."""
    return {
        "retrainer": {"window_events": DAY_EVENTS + DAY_EVENTS // 3, "drift_min_samples": DAY_EVENTS,
                      "cooldown_seconds": 8.0, "degradation_below": 0.85},
        "monitor": {"core": MonitorCore(data_drift=DataDriftOptions(
            reference_size=DAY_EVENTS, window_size=DAY_EVENTS, every=1_000))},
    }


def _warm_champion(settings: Settings, options: DemoOptions) -> None:
    """Train the first champion on a warm-up stream from before the drift."""
    model = get_spec("logreg").build(seed=options.seed)
    warm = list(CardStream(events=options.warmup, seed=options.seed + 1000, id_prefix="warm"))
    learn_in_order(model, [tx.features for tx in warm], [tx.label for tx in warm])
    registry = Registry()
    records = register_trained(
        settings, registry, "fraud", model, spec_name="logreg", stage="champion", by="demo",
        reason=f"initial champion, trained on {len(warm)} warm-up transactions", seed=options.seed,
        samples=len(warm),
    )
    publish_records(settings, records)


def _replay(settings: Settings, stream: CardStream, rate: float, counts: dict[str, int],
            stop: threading.Event) -> None:
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for kind, record in merged_events(stream):
            if stop.is_set():
                break
            if kind == "features":
                producer.send_features(**record)
                counts["features"] += 1
                ahead = counts["features"] / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            else:
                producer.send_label(**record)
                counts["labels"] += 1


def run_demo(options: DemoOptions, *, console: Console | None = None) -> DemoResult:
    """Run the demo; returns its counts (also printed, with where to look next)."""
    console = console or Console()
    live_view = console.is_terminal if options.live is None else options.live
    drift_at = options.drift_at if options.drift_at is not None else int(options.events * 0.4)
    output = options.output
    output.mkdir(parents=True, exist_ok=True)
    broker = None if options.bootstrap_servers else EmbeddedBroker(log_path=output / "broker.log").start()
    servers = options.bootstrap_servers or (broker.bootstrap_servers if broker else "")
    run_id = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=servers, topic_prefix=f"demo-{run_id}.", partitions=2,
        signing_key=secrets.token_hex(32), artifact_dir=output / "artifacts",
        state_dir=output / "state" / run_id, metrics_port=free_port(), session_timeout_ms=6000,
        joiner={"label_ttl_seconds": 600.0},
    )
    started = time.monotonic()
    stop, feeder_stop = threading.Event(), threading.Event()
    counts = {"features": 0, "labels": 0}
    notes: list[str] = []
    try:
        create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
        console.print(f"[bold]riverops demo[/]: broker {servers}, topics demo-{run_id}.*, "
                      f"metrics http://127.0.0.1:{settings.metrics_port}/metrics")
        _warm_champion(settings, options)
        notes.append("registered fraud v1 (champion, warm-up trained)")
        registry = CollectorRegistry()
        exit_code: list[int] = []
        workers = threading.Thread(
            target=lambda: exit_code.append(run_roles(
                settings, list(ALL_ROLES), stop=stop, registry=registry, group_prefix=f"riverops-demo-{run_id}",
                options=_role_options(),
            )), daemon=True,
        )
        workers.start()
        # event times start now and advance at the offered rate, so the stream's clock, the
        # workers' clock and the plot's time axis agree
        stream = CardStream(events=options.events, seed=options.seed, drift_at=drift_at,
                            events_per_second=options.rate, start=datetime.now(UTC))
        feeder = threading.Thread(target=_replay, args=(settings, stream, options.rate, counts, feeder_stop),
                                  daemon=True)
        feeder.start()
        previous = take_snapshot(registry)

        def view() -> Any:
            nonlocal previous
            now = take_snapshot(registry)
            header = (f"events {counts['features']:,}/{options.events:,}  labels {counts['labels']:,}  "
                      f"drift at event {drift_at:,}  elapsed {time.monotonic() - started:,.0f}s")
            rendered = render_live(now, previous, header=header, notes=notes)
            previous = now
            return rendered

        def finished() -> bool:
            if feeder.is_alive() or not workers.is_alive():
                return not workers.is_alive()
            snap = take_snapshot(registry)
            champion = [v for (m, _, variant), v in snap.samples.items() if variant == "champion"]
            return sum(champion) >= counts["labels"] * 0.99 and snap.pending <= counts["features"] * 0.02

        deadline = started + options.duration
        if live_view:
            with Live(view(), console=console, refresh_per_second=2) as live:
                while not finished() and time.monotonic() < deadline:
                    time.sleep(1.0)
                    live.update(view())
        else:
            last_print = 0.0
            while not finished() and time.monotonic() < deadline:
                time.sleep(1.0)
                if time.monotonic() - last_print >= 10:
                    console.print(f"[{time.monotonic() - started:5.0f}s] features {counts['features']:,} "
                                  f"labels {counts['labels']:,}")
                    last_print = time.monotonic()
        feeder_stop.set()
        stop.set()
        workers.join(60)
        if exit_code and exit_code[0] != 0:
            console.print("[red]a worker role failed; see the log above[/]")
        drift_time = stream.start + timedelta(seconds=drift_at / options.rate)
        result = _finish(settings, options, counts, started, console, output, drift_time)
        result.worker_failed = bool(exit_code and exit_code[0] != 0)
        return result
    finally:
        feeder_stop.set()
        stop.set()
        if broker is not None:
            broker.stop()


def recovery(metrics: list[dict[str, Any]], drift_time: datetime, *, tolerance: float = 0.02
             ) -> tuple[float, float, int] | None:
    """(pre-drift accuracy, recovered accuracy, labelled events after the drift it took).

    The serving champion's count-window accuracy just before ``drift_time`` is the level;
    recovery is the first later MetricsEvent of a *newer* champion version, over a full
    count window of its own outcomes, within ``tolerance`` of it; events are counted from
    the champions' sample counts. None when the accuracy never came back.
    """
    champion = sorted((e for e in metrics if e["variant"] == "champion" and e["window_kind"] == "count"
                       and "accuracy" in e["metrics"]), key=lambda e: e["emitted_at"])
    before = [e for e in champion if e["emitted_at"] <= drift_time]
    if not before:
        return None
    level, old_version = before[-1]["metrics"]["accuracy"], before[-1]["version"]
    samples_at: dict[int, int] = {}
    for e in champion:
        if e["emitted_at"] <= drift_time:
            samples_at[e["version"]] = e["samples"]
    baseline = sum(samples_at.values())
    seen: dict[int, int] = dict(samples_at)
    for e in champion:
        if e["emitted_at"] <= drift_time:
            continue
        seen[e["version"]] = e["samples"]
        if (e["version"] > old_version and e["samples"] >= e["window_size"]
                and e["metrics"]["accuracy"] >= level - tolerance):
            return level, e["metrics"]["accuracy"], sum(seen.values()) - baseline
    return None


def _finish(settings: Settings, options: DemoOptions, counts: dict[str, int], started: float,
            console: Console, output: Path, drift_time: datetime | None = None) -> DemoResult:
    metrics = read_to_end(settings, "metrics", "MetricsEvent")
    drift = read_to_end(settings, "drift", "DriftEvent")
    versions = read_to_end(settings, "model-registry", "ModelVersion")
    predictions = read_to_end(settings, "predictions", "PredictionEvent", timeout=30)
    feedback = read_to_end(settings, "feedback", "FeedbackEvent", timeout=30)
    dead = read_to_end(settings, "deadletter", "DeadLetter")
    plot_path = plot_rolling_metrics(
        metrics, drift_events=drift, registry_records=versions, path=output / "rolling_metrics.png",
        title=f"riverops demo: {options.events:,} transactions, drift at "
        f"{options.drift_at or int(options.events * 0.4):,}",
    )
    result = DemoResult(
        events=counts["features"], labels=counts["labels"], predictions=len(predictions),
        feedback=len({f["event_id"] for f in feedback}), drift_alarms=len(drift),
        versions=len({v["version"] for v in versions}),
        promotions=sum(1 for v in versions if v["stage"] == "champion"),
        dead_letters=len(dead), seconds=time.monotonic() - started, plot=plot_path, metrics=metrics,
    )
    table = Table(title="riverops demo summary")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in (
        ("feature events", f"{result.events:,}"), ("labels", f"{result.labels:,}"),
        ("predictions", f"{result.predictions:,}"), ("joined (feedback events)", f"{result.feedback:,}"),
        ("drift alarms", f"{result.drift_alarms}"), ("model versions", f"{result.versions}"),
        ("champion records (promotions)", f"{result.promotions}"), ("dead letters", f"{result.dead_letters}"),
        ("seconds", f"{result.seconds:.0f}"),
    ):
        table.add_row(name, value)
    console.print(table)
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    for event in metrics:
        if event["window_kind"] == "count":
            latest[(event["version"], event["variant"])] = event
    final = Table(title="final rolling metrics (last 1000 labelled events)")
    for column in ("version", "variant", "samples", "accuracy", "roc_auc", "f1"):
        final.add_column(column, justify="right")
    for (version, variant), event in sorted(latest.items()):
        values = event["metrics"]
        final.add_row(str(version), variant, f"{event['samples']:,}",
                      *(f"{values[k]:.4f}" if k in values else "" for k in ("accuracy", "roc_auc", "f1")))
    console.print(final)
    story = Table(title="the registry's story (every change, in order)")
    for column in ("when", "version", "stage", "by", "reason"):
        story.add_column(column)
    for record in versions:
        story.add_row(record["changed_at"].strftime("%H:%M:%S"), str(record["version"]), record["stage"],
                      record["changed_by"], record["reason"][:90])
    console.print(story)
    if drift_time is not None:
        back = recovery(metrics, drift_time)
        result.recovery = back
        console.print(
            f"recovery: pre-drift accuracy {back[0]:.4f}; a new champion was back to {back[1]:.4f} "
            f"(within 2 points) {back[2]:,} labelled events after the drift" if back else
            "recovery: the champion's accuracy did not come back within 2 points of its pre-drift level")
    if drift:
        first = min(d["detected_at"] for d in drift if d["kind"] == "concept") if any(
            d["kind"] == "concept" for d in drift) else None
        console.print(f"concept drift alarms: {sum(d['kind'] == 'concept' for d in drift)}, "
                      f"data drift alarms: {sum(d['kind'] == 'data' for d in drift)}"
                      + (f", first concept alarm at {first:%H:%M:%S}" if first else ""))
    console.print(
        "Where to look next:\n"
        f"  plot of rolling metrics   {plot_path}\n"
        f"  broker log                {output / 'broker.log'}\n"
        "  the same loop for real    riverops broker & riverops topics create & riverops worker all\n"
        "  watch it                  riverops status --watch 5   (docs/operations.md)"
    )
    return result
