"""``make bench``: every benchmark in one process tree on a fresh broker.

    .venv/bin/python -m bench                       # defaults: a few minutes
    .venv/bin/python -m bench --events 300000 --loop-events 200000 --join-events 100000 1000000
    .venv/bin/python -m bench --only limit scorer   # a subset
    .venv/bin/python -m bench --only scorer quix --broker tansu

The broker is one Apache Kafka node (KRaft, jars from Maven Central, as the integration
tests use) or, with ``--broker tansu``, the embedded Tansu broker; KAFKA_BOOTSTRAP_SERVERS
names a running one instead. Each part gets fresh topics (a uuid prefix) on the same broker.
The workers run at-least-once; ``python -m bench.guarantees`` (``make bench-kafka``) measures
exactly-once against it. The ``quix`` part runs the scorer's job as a Quix Streams app,
defaults and tuned (:mod:`bench.quix_baseline`, in a venv of its own). A part that fails is
recorded with its error and the others still run: a missing figure is reported, never
replaced by a guess. Results go to bench/results/results.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import report
from bench.environment import describe

if TYPE_CHECKING:
    from riverops.kafka.cluster import JvmProfile

__all__ = ["main", "PARTS"]

PARTS = ("limit", "faust", "scorer", "typed", "quix", "explain", "full_loop", "typed_loop", "latency", "join")
BROKERS = ("kafka", "tansu")
RESULTS = Path(__file__).resolve().parent / "results"


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="scorer events (default 200k)")
    parser.add_argument("--limit-events", type=int, default=50_000)
    parser.add_argument("--faust-events", type=int, default=20_000)
    parser.add_argument("--loop-events", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000,
                        help="events processed before each clock starts")
    parser.add_argument("--latency-rate", type=float, default=5_000.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--join-events", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--join-method", choices=("rss", "tracemalloc"), default="rss",
                        help="tracemalloc is exact but ~10x slower")
    parser.add_argument("--partitions", type=int, default=2, help="partitions of the event topics")
    parser.add_argument("--broker", choices=BROKERS, default="kafka",
                        help="the broker started for the run (KAFKA_BOOTSTRAP_SERVERS overrides)")
    parser.add_argument("--broker-jvm", choices=("quick", "kafka"), default="quick",
                        help="the Kafka broker's JVM flags: the tests' quick-starting ones (serial GC, "
                        "C1 only; the default: a fresh broker's C2 compiling takes the 2 cores' time "
                        "for minutes) or Apache Kafka's start scripts' (G1, full JIT, 1 GB heap)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _options(argv)
    console = Console()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    results: dict[str, Any] = {
        "machine": {**describe(broker=None if external else args.broker),
                    **({"broker_jvm": args.broker_jvm} if not external and args.broker == "kafka" else {})},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "memory": {"workers": {}, "join": []},
    }
    workers: dict[str, tuple[str, int]] = results["memory"]["workers"]
    with tempfile.TemporaryDirectory(prefix="riverops-bench-") as tmp, Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as progress:
        workdir = Path(tmp)
        broker = None if external else _start_broker(args.broker, workdir, jvm=args.broker_jvm)
        bootstrap = external or (broker.bootstrap_servers if broker else "")
        console.log(f"broker {results['machine']['broker']} on {bootstrap}")

        def part(name: str, title: str, total: int | None,
                 run: Callable[[Callable[[int], None]], Any]) -> Any:
            if name not in args.only:
                return None
            task = progress.add_task(title, total=total)
            started = time.perf_counter()
            try:
                value = run(lambda n: progress.update(task, completed=n))
            except Exception as exc:  # a failed part is reported, the others still run
                console.log(f"[red]{name} failed: {type(exc).__name__}: {exc}")
                results[name] = {"error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=5)}
                return None
            finally:
                progress.update(task, completed=total, visible=True)
            console.log(f"{name} done in {time.perf_counter() - started:.0f} s")
            return value

        try:
            _run_parts(args, part, results, workers, bootstrap, workdir, console,
                       broker.pid if broker else None)
        finally:
            if broker is not None:
                broker.stop()
    as_json, as_md = report.write(results, args.output)
    console.print(report.markdown(results).split("## Versions")[0])
    console.log(f"wrote {as_md} and {as_json}")


def _start_broker(engine: str, workdir: Path, *, jvm: JvmProfile = "quick") -> Any:
    """A fresh broker of ``engine`` for the run, its data under ``workdir``; a Kafka
    broker's JVM flags by ``jvm`` (riverops.kafka.cluster.JVM_FLAGS)."""
    if engine == "kafka":
        from riverops.kafka.cluster import KafkaCluster

        return KafkaCluster(data_dir=workdir / "kafka", jvm=jvm).start()
    from riverops.kafka.tansu import EmbeddedBroker

    return EmbeddedBroker().start()


def _run_parts(args: argparse.Namespace, part: Callable[..., Any], results: dict[str, Any],
               workers: dict[str, tuple[str, int]], bootstrap: str, workdir: Path,
               console: Console, broker_pid: int | None) -> None:
    from bench.faust_baseline import measure_faust
    from bench.full_loop import measure_full_loop
    from bench.harness import bench_settings, register_champion, train_champion
    from bench.join_state import measure_join_state
    from bench.latency import measure_broker_floor, measure_latency
    from bench.limit import measure_limit
    from bench.quix_baseline import VARIANTS
    from bench.scorer_rate import measure_scorer
    from bench.workload import typed_features

    def settings() -> Any:
        fresh = bench_settings(bootstrap, workdir, partitions=args.partitions)
        register_champion(fresh)
        return fresh

    limit = part("limit", "limit: River in-process", None,
                 lambda _: measure_limit(train_champion(), events=args.limit_events))
    if limit:
        results["limit"] = {**limit, "events": args.limit_events}
        console.log(f"limit: {limit['per_event']:,.0f}/s per event, "
                    f"{limit['batched']:,.0f}/s batched")

    faust = part("faust", "faust-streaming baseline", args.warmup + args.faust_events,
                 lambda report: measure_faust(settings(), workdir, events=args.faust_events,
                                              warmup=args.warmup, progress=report))
    if faust:
        results["faust"] = faust
        workers["faust worker"] = ("faust baseline", faust["peak_rss"])
        console.log(f"faust: {faust['events_per_s']:,.0f} events/s")

    def scorer_part(name: str, title: str, explain_top_k: int = 0, typed: bool = False) -> Any:
        def run(report: Callable[[int], None]) -> Any:
            fresh = settings()
            fresh = fresh.model_copy(update={"scorer": fresh.scorer.model_copy(update={"explain_top_k": explain_top_k})})
            if typed:
                fresh = typed_features(fresh)
            return measure_scorer(fresh, workdir, events=args.events, warmup=args.warmup,
                                  progress=report, broker_pid=broker_pid)
        return part(name, title, args.warmup + args.events, run)

    scorer = scorer_part("scorer", "riverops scorer")
    if scorer:
        results["scorer"] = scorer
        workers["scorer"] = ("scorer alone", scorer["peak_rss"])
        console.log(f"scorer: {scorer['events_per_s']:,.0f} events/s, "
                    f"{scorer['cpu_us_per_event']:.1f} µs CPU per event")

    # the same scorer on the same events written as the bench model's typed feature record
    typed = scorer_part("typed", "riverops scorer, typed feature records", typed=True)
    if typed:
        results["scorer_typed"] = typed
        console.log(f"scorer on typed features: {typed['events_per_s']:,.0f} events/s, "
                    f"{typed['cpu_us_per_event']:.1f} µs CPU per event")

    quix = part("quix", "Quix Streams, defaults then tuned", 2 * (args.warmup + args.events),
                lambda report: _quix(args, lambda: bench_settings(bootstrap, workdir,
                                                                  partitions=args.partitions),
                                     workdir, console, report, broker_pid))
    if quix:
        results["quix"] = quix
        for variant in VARIANTS:
            if "peak_rss" in quix[variant]:
                workers[f"quix app ({variant})"] = ("Quix baseline", quix[variant]["peak_rss"])

    # the same scorer with 5 contributions per prediction
    explained = scorer_part("explain", "riverops scorer, explanations on", explain_top_k=5)
    if explained:
        results["scorer_explained"] = explained
        console.log(f"scorer with explanations: {explained['events_per_s']:,.0f} events/s")

    # the loop on the generic feature map, then on the bench model's typed record (the
    # joiner then writes the typed FeedbackEvent the monitor and the learner decode)
    for name, key, title, typed_loop in (("full_loop", "full_loop", "full loop", False),
                                         ("typed_loop", "full_loop_typed", "full loop, typed features", True)):
        loop = part(name, f"riverops {title}", args.warmup + args.loop_events,
                    lambda report, typed_loop=typed_loop: measure_full_loop(
                        typed_features(settings()) if typed_loop else settings(), workdir,
                        events=args.loop_events, warmup=args.warmup, progress=report,
                        broker_pid=broker_pid))
        if loop:
            results[key] = loop
            for role, rss in loop["peak_rss"].items():
                workers[f"{role} ({title})"] = (title, rss)
            console.log(f"{title}: {loop['events_per_s']:,.0f} labelled events/s, "
                        f"{sum(loop['cpu_us_per_event'].values()):.0f} µs CPU per labelled event")

    def latency_and_floor(report: Callable[[int], None]) -> tuple[Any, list[Any]]:
        # the service's producer with riverops' defaults (linger.ms 5); the floor also with
        # linger.ms 1, as a latency-sensitive service would set it (the scorer's own is 1)
        measured = measure_latency(settings(), rate=args.latency_rate, seconds=args.latency_seconds,
                                   progress=report)
        floors = [measure_broker_floor(settings(), rate=args.latency_rate, seconds=3,
                                       producer_config=producer, consumer_config={"fetch.wait.max.ms": 10})
                  for producer in (None, {"linger.ms": 1})]
        return measured, floors

    both = part("latency", f"latency at {args.latency_rate:,.0f}/s offered",
                int(args.latency_rate * args.latency_seconds), latency_and_floor)
    if both:
        results["latency"], results["broker_floor"] = both
        workers["scorer (latency run)"] = ("latency at 5k/s", both[0]["peak_rss"])
        console.log(f"latency: p50 {both[0]['p50_ms']:.1f} ms, p99 {both[0]['p99_ms']:.1f} ms, "
                    f"scorer {both[0]['scorer_cpu_us_per_event']:.1f} µs CPU per event")

    for events in args.join_events:
        join = part("join", f"join state, {events:,} pending", None,
                    lambda _, n=events: measure_join_state(n, method=args.join_method))
        if join:
            results["memory"]["join"].append(join)
            console.log(f"join state at {events:,} pending: {join['bytes_per_event']:.0f} B/event")


def _quix(args: argparse.Namespace, settings: Callable[[], Any], workdir: Path, console: Console,
          report: Callable[[int], None], broker_pid: int | None) -> dict[str, Any]:
    """Both Quix variants, one after the other on fresh topics (``settings()``: no champion
    registered, the app loads its own pickle); a variant that fails is recorded with its
    error and the other still runs."""
    from bench.quix_baseline import VARIANTS, ensure_venv, measure_quix, venv_versions

    python = ensure_venv(log=console.log)
    results: dict[str, Any] = {"packages": venv_versions(python)}
    per_variant = args.warmup + args.events
    for i, variant in enumerate(VARIANTS):
        try:
            measured = measure_quix(settings(), workdir, python=python, variant=variant,
                                    events=args.events, warmup=args.warmup, broker_pid=broker_pid,
                                    progress=lambda n, base=i * per_variant: report(base + n))
        except Exception as exc:  # the other variant still runs
            console.log(f"[red]quix {variant} failed: {type(exc).__name__}: {exc}")
            results[variant] = {"error": f"{type(exc).__name__}: {exc}",
                                "traceback": traceback.format_exc(limit=5)}
            continue
        results[variant] = measured
        console.log(f"quix {variant}: {measured['events_per_s']:,.0f} events/s, "
                    f"{measured['cpu_us_per_event']:.1f} µs CPU per event, "
                    f"started in {measured['startup_s']:.1f} s")
    return results
