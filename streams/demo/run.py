"""``make demo``: the whole loop on an embedded broker, with a live view, a summary and a plot.

It starts a broker (unless ``--bootstrap-servers``), creates the topics, trains and
registers an initial champion on a warm-up stream, starts every worker role in this
process, and replays the synthetic card-transaction stream (``streams/demo/cardgen.py``) with
late labels and a change of fraud pattern partway through. At the end it reads the
metrics, drift and registry topics back and writes a PNG plot and a summary
(``streams/demo/summary.py``).

The roles are configured as any deployment configures them, through their settings
sections (:func:`demo_settings`); the options are checked before anything starts
(:class:`DemoOptions` raises :class:`~riverops.schemas.errors.ConfigError` naming the
command-line option).
"""

from __future__ import annotations

import bisect
import math
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from riverops.demo.summary import (
    Recovery,
    drift_line,
    metrics_table,
    recovery,
    recovery_line,
    recovery_of,
    story_table,
)
from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records
from riverops.kafka.tansu import EmbeddedBroker, free_port
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.schemas.errors import ConfigError
from riverops.sections import DataDriftSettings, MonitorSettings, RetrainerSettings
from riverops.settings import Settings
from riverops.worker import ALL_ROLES, run_roles, tune_gc

__all__ = ["DemoOptions", "DemoResult", "StreamClock", "run_demo", "demo_settings", "short_run_note",
           "recovery", "DAY_EVENTS", "STORY_EVENTS"]

DAY_EVENTS = 6_000  # one simulated day of the card stream (2,000 cards x 3 purchases)
DRIFT_SHARE = 0.4  # the default change point, as a share of the events


@dataclass(frozen=True)
class DemoOptions:
    """What ``riverops demo`` runs; every value is checked when the options are made, in
    the command's terms (``--events``, ``--drift-at``), so nothing starts on bad options."""

    events: int = 60_000
    rate: float = 1_000.0  # feature events per second offered
    seed: int = 42
    drift_at: int | None = None  # default: 40% of the events
    warmup: int = 20_000  # > 3 simulated days: a model that never saw a night fails at night
    duration: float = 240.0  # seconds at most for streaming and draining
    output: Path = Path("demo-output")
    bootstrap_servers: str | None = None
    live: bool | None = None  # default: when the console is a terminal

    def __post_init__(self) -> None:
        problems = []
        if self.events < 2:
            problems.append(f"--events must be at least 2 (one transaction before the change of "
                            f"fraud pattern, one after), got {self.events}")
        if not (math.isfinite(self.rate) and self.rate > 0):
            problems.append(f"--rate must be a number of transactions per second above 0, got {self.rate:g}")
        if self.drift_at is not None and self.events >= 2 and not 1 <= self.drift_at < self.events:
            problems.append(f"--drift-at must be a transaction index from 1 to {self.events - 1:,} "
                            f"(before --events {self.events:,}), got {self.drift_at:,}")
        if not (math.isfinite(self.duration) and self.duration > 0):
            problems.append(f"--duration must be a number of seconds above 0, got {self.duration:g}")
        if self.warmup < 1:
            problems.append(f"warmup must be at least 1 transaction, got {self.warmup}")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def change_at(self) -> int:
        """The transaction index where the fraud pattern changes."""
        return self.drift_at if self.drift_at is not None else max(1, int(self.events * DRIFT_SHARE))


STORY_EVENTS = 3 * DAY_EVENTS
"""Transactions after the change of pattern the loop needs to tell its story: a thousand or
two for the alarm, a simulated day of the new pattern to retrain on, the retrain, then a
window of outcomes of the new champion. Measured on two loaded cores before the fast
recovery after an alarm: recovery 10-14 thousand labelled events after the change, and
12,000 were sometimes too few; with it, 9,500-10,500 in two runs (2026-12-01). With the
change at 40%, ``--events 30000`` (the quick start's short run) leaves 18,000."""


def short_run_note(options: DemoOptions) -> str | None:
    """A warning when the run ends too soon after the change for a retrained champion to
    serve (the demo still runs: the counts and the plot are right, the story is cut)."""
    after = options.events - options.change_at
    if after >= STORY_EVENTS:
        return None
    return (f"note: {after:,} transactions after the change of pattern (at transaction "
            f"{options.change_at:,}); the loop needs about {STORY_EVENTS:,} to notice it, retrain "
            f"on a simulated day of the new pattern and serve the new champion, so this run may "
            f"end first (try --events {_story_events(options)})")


def _story_events(options: DemoOptions) -> int:
    if options.drift_at is None:
        return math.ceil(STORY_EVENTS / (1 - DRIFT_SHARE) / 1000) * 1000
    return options.drift_at + STORY_EVENTS


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
    recovery: Recovery | None = None  # of the champions' ROC AUC
    worker_failed: bool = False  # a role stopped with an error (its log says why)
    drained: bool = True  # False: stopped at --duration before every label reached the monitor


def demo_settings(options: DemoOptions, *, bootstrap_servers: str, run_id: str) -> Settings:
    """The demo's settings: its own topics, groups and state, and the roles sized to the
    stream's daily cycle. A retrain window, the feedback awaited after a drift alarm and
    the data-drift windows each hold a simulated day or more, so that every hour is in
    them (a model trained on daytime only misjudges the night; a daytime reference makes
    every night a data drift).

    Retrains come from every concept-drift alarm (``min_error_rise=0``: on this stream the
    new fraud is 3.5% of the traffic, the old 1.5%, and the error rate after the change
    rose by less than a point in some runs, so any threshold left the story to chance;
    a retrain after an alarm on a burst of old fraud is judged and rejected by the policy),
    and they train on the feedback after the alarm. No degradation trigger: it fires as early, and its retrain learns from the last
    window, mostly the old pattern, a poor model that still beats the collapsed champion
    and is promoted."""
    output = options.output
    return Settings(
        bootstrap_servers=bootstrap_servers, topic_prefix=f"demo-{run_id}.", partitions=2,
        group_prefix=f"riverops-demo-{run_id}", signing_key=secrets.token_hex(32),
        artifact_dir=output / "artifacts", state_dir=output / "state" / run_id,
        metrics_port=free_port(), session_timeout_ms=6000,
        # the embedded broker cannot do transactions; a broker of the user's is Kafka's
        processing_guarantee="exactly_once" if options.bootstrap_servers else "at_least_once",
        joiner={"label_ttl_seconds": 600.0},
        retrainer=RetrainerSettings(
            window_events=DAY_EVENTS + DAY_EVENTS // 3, drift_min_samples=DAY_EVENTS,
            cooldown_seconds=8.0, degradation_below=None, min_error_rise=0.0,
        ),
        monitor=MonitorSettings(data_drift=DataDriftSettings(
            reference_size=DAY_EVENTS, window_size=DAY_EVENTS, every=1_000,
        )),
    )  # fmt: skip


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


class StreamClock:
    """Event time to wall time, from when the feeder sent each event.

    The stream's event times advance at the offered rate; on a loaded machine the feeder
    falls behind it. The monitor stamps metrics with the wall clock and drift alarms
    with label (event) time, so the plot and the summary put every event-time moment
    (the change of pattern, the alarms) on the wall clock through this map.

    >>> from datetime import timedelta
    >>> clock = StreamClock()
    >>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
    >>> clock.sent(t0, 100.0); clock.sent(t0 + timedelta(seconds=10), 120.0)
    >>> [clock.wall(t0 + timedelta(seconds=s)).timestamp() for s in (-1, 5, 11)]
    [99.0, 110.0, 121.0]
    """

    def __init__(self) -> None:
        self._events: list[float] = []
        self._walls: list[float] = []
        self.change: datetime | None = None  # the event time of the first changed transaction

    def sent(self, event_time: datetime, wall: float) -> None:
        """Record that the event of ``event_time`` was sent at ``wall`` (epoch seconds)."""
        self._events.append(event_time.timestamp())
        self._walls.append(wall)

    def wall(self, event_time: datetime) -> datetime:
        """When the stream was at ``event_time``: interpolated between sent events, shifted
        by the nearest one's lag outside them (unchanged when nothing was sent)."""
        t = event_time.timestamp()
        if not self._events:
            return event_time
        i = bisect.bisect_left(self._events, t)
        if 0 < i < len(self._events) and self._events[i] > self._events[i - 1]:
            e0, e1, w0, w1 = self._events[i - 1], self._events[i], self._walls[i - 1], self._walls[i]
            return datetime.fromtimestamp(w0 + (t - e0) * (w1 - w0) / (e1 - e0), tz=UTC)
        j = min(i, len(self._events) - 1)
        return datetime.fromtimestamp(t + self._walls[j] - self._events[j], tz=UTC)


def _replay(settings: Settings, stream: CardStream, rate: float, counts: dict[str, int],
            stop: threading.Event, clock: StreamClock) -> None:
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for kind, record in merged_events(stream):
            if stop.is_set():
                break
            if kind == "features":
                producer.send_features(**record)
                if counts["features"] == stream.drift_at:
                    clock.change = record["event_time"]
                if counts["features"] % 50 == 0 or counts["features"] == stream.drift_at:
                    clock.sent(record["event_time"], time.time())
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
    note = short_run_note(options)
    if note:
        console.print(f"[yellow]{note}[/]")
    drift_at = options.change_at
    output = options.output
    output.mkdir(parents=True, exist_ok=True)
    broker = None if options.bootstrap_servers else EmbeddedBroker(log_path=output / "broker.log").start()
    servers = options.bootstrap_servers or (broker.bootstrap_servers if broker else "")
    run_id = uuid.uuid4().hex[:8]
    settings = demo_settings(options, bootstrap_servers=servers, run_id=run_id)
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
        tune_gc()  # the workers run in this process
        workers = threading.Thread(
            target=lambda: exit_code.append(run_roles(settings, list(ALL_ROLES), stop=stop, registry=registry)),
            daemon=True,
        )
        workers.start()
        # event times start now and advance at the offered rate, so the stream's clock, the
        # workers' clock and the plot's time axis agree
        stream = CardStream(events=options.events, seed=options.seed, drift_at=drift_at,
                            events_per_second=options.rate, start=datetime.now(UTC))
        clock = StreamClock()
        feeder = threading.Thread(target=_replay, daemon=True,
                                  args=(settings, stream, options.rate, counts, feeder_stop, clock))
        feeder.start()
        previous = take_snapshot(registry)

        def view() -> Any:
            nonlocal previous
            now = take_snapshot(registry)
            header = (f"events {counts['features']:,}/{options.events:,}  labels {counts['labels']:,}  "
                      f"drift at event {drift_at:,}  elapsed {time.monotonic() - started:,.0f}s")
            rendered = render_live(now, previous, header=header, notes=notes,
                                   window=settings.monitor.window_size)
            previous = now
            return rendered

        def progress() -> tuple[float, float]:
            """Labelled outcomes of the served predictions so far (a champion's or a
            challenger's with its share of the traffic; a shadow's come on top), and events
            waiting for a label."""
            snap = take_snapshot(registry)
            served = sum(v for (_, _, variant), v in snap.samples.items() if variant in ("champion", "challenger"))
            return served, snap.pending

        def finished() -> bool:
            if feeder.is_alive() or not workers.is_alive():
                return not workers.is_alive()
            served, pending = progress()
            return served >= counts["labels"] * 0.99 and pending <= counts["features"] * 0.02

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
                    served, pending = progress()
                    console.print(f"[{time.monotonic() - started:5.0f}s] features {counts['features']:,} "
                                  f"labels {counts['labels']:,} outcomes {served:,.0f} "
                                  f"pending {pending:,.0f}")
                    last_print = time.monotonic()
        drained = finished()
        if workers.is_alive() and not drained:
            served, pending = progress()
            console.print(f"[yellow]stopped at the --duration deadline ({options.duration:g} s) before the "
                          f"loop drained: outcomes {served:,.0f} of {counts['labels']:,} labels, "
                          f"{pending:,.0f} events pending[/]")
        feeder_stop.set()
        stop.set()
        workers.join(60)
        if exit_code and exit_code[0] != 0:
            console.print("[red]a worker role failed; see the log above[/]")
        result = _finish(settings, options, counts, started, console, clock)
        result.worker_failed = bool(exit_code and exit_code[0] != 0)
        result.drained = drained
        return result
    finally:
        feeder_stop.set()
        stop.set()
        if broker is not None:
            broker.stop()


def _finish(settings: Settings, options: DemoOptions, counts: dict[str, int], started: float,
            console: Console, clock: StreamClock) -> DemoResult:
    """Read the outputs back, draw the plot and print the summary (every moment on the
    wall clock, the metrics' and the registry's)."""
    metrics = read_to_end(settings, "metrics", "MetricsEvent")
    drift = [{**d, "detected_at": clock.wall(d["detected_at"])}
             for d in read_to_end(settings, "drift", "DriftEvent")]
    drift_time = clock.wall(clock.change) if clock.change else None  # None: stopped before it
    versions = read_to_end(settings, "model-registry", "ModelVersion")
    predictions = read_to_end(settings, "predictions", "PredictionEvent", timeout=30)
    feedback = read_to_end(settings, "feedback", "FeedbackEvent", timeout=30)
    dead = read_to_end(settings, "deadletter", "DeadLetter")
    plot_path = plot_rolling_metrics(
        metrics, drift_events=drift, registry_records=versions, change_at=drift_time,
        path=options.output / "rolling_metrics.png",
        title=f"riverops demo: {options.events:,} transactions at {options.rate:g}/s, the fraud "
        f"pattern changes at transaction {options.change_at:,}",
    )
    result = DemoResult(
        events=counts["features"], labels=counts["labels"], predictions=len(predictions),
        feedback=len({f["event_id"] for f in feedback}), drift_alarms=len(drift),
        versions=len({v["version"] for v in versions}),
        promotions=sum(1 for v in versions if v["stage"] == "champion"),
        dead_letters=len(dead), seconds=time.monotonic() - started, plot=plot_path, metrics=metrics,
        recovery=recovery_of(metrics, drift_time) if drift_time else None,
    )
    table = Table(title="riverops demo summary", title_justify="left")
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
    console.print(metrics_table(metrics, versions))
    console.print(story_table(versions))
    console.print(recovery_line(result.recovery))
    console.print(drift_line(drift, drift_time))
    console.print(
        "Where to look next:\n"
        f"  plot of rolling metrics   {plot_path}\n"
        f"  broker log                {options.output / 'broker.log'}\n"
        "  the same loop for real    riverops broker & riverops topics create & riverops worker all\n"
        "  watch it                  riverops status --watch 5   (docs/operations.md)"
    )
    return result
