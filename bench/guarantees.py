"""``python -m bench.guarantees`` (``make bench-kafka``): what exactly-once costs against
at-least-once, measured in one run on one Apache Kafka node started for it.

    .venv/bin/python -m bench.guarantees                   # 2 rounds and a profile, ~6 minutes
    .venv/bin/python -m bench.guarantees --rounds 3 --no-profile

Each round runs the scorer bench (:mod:`bench.scorer_rate`) and the full-loop bench
(:mod:`bench.full_loop`) once under each guarantee, the two runs of a part back to back and
their order alternating from round to round, so a burst of load from elsewhere on the
shared machine does not fall on one guarantee only. Every run has fresh topics and groups.
Then, unless ``--no-profile``, one more run of each part under each guarantee with py-spy
on every worker (:mod:`bench.pyspy`): where the runtime loop's wall time goes. The
profiled runs' rates are not among the figures.

After each run the output topics are read ``read_committed`` to their ends: the records
beyond one per event are repeats (none is expected from either guarantee here, but an
at-least-once worker that loses its group membership under load replays its last batch),
and the end offsets beyond the records read are the transaction markers (one per
transaction per partition it wrote to, so none under at-least-once: the guarantee in
force shows). The ``guarantees`` section of bench/results/results.json gets every run, the
medians and the ratios exactly_once / at_least_once (the other sections are kept);
results.md is rewritten with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from rich.console import Console

from bench import pyspy, report
from bench.environment import describe
from bench.harness import Worker, bench_settings, register_champion
from riverops.kafka.clients import make_consumer
from riverops.kafka.topics import TopicCatalogue, TopicRole
from riverops.settings import ProcessingGuarantee, Settings

__all__ = ["main", "summarize", "GUARANTEES", "PARTS"]

GUARANTEES: tuple[ProcessingGuarantee, ...] = get_args(ProcessingGuarantee)
PARTS = ("scorer", "full_loop")
RESULTS = Path(__file__).resolve().parent / "results"
Attach = Callable[[list[Worker]], Callable[[], None]]


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.guarantees",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="scorer events (default 100k)")
    parser.add_argument("--loop-events", type=int, default=50_000,
                        help="full-loop labelled events (default 50k)")
    parser.add_argument("--warmup", type=int, default=2_000,
                        help="events processed before each clock starts")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each part per guarantee")
    parser.add_argument("--partitions", type=int, default=2, help="partitions of the event topics")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="one more run of each part and guarantee under py-spy")
    parser.add_argument("--keep-profiles", type=Path, default=None, metavar="DIR",
                        help="keep py-spy's raw stacks there (default: dropped with the run)")
    parser.add_argument("--rebucket", type=Path, default=None, metavar="DIR",
                        help="measure nothing: recompute the profile shares in OUTPUT's results.json "
                             "from the raw stacks kept in DIR (after a change to bench.pyspy.BUCKETS)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def read_to_end(settings: Settings, topic: str, *, idle: float = 3.0) -> tuple[int, int]:
    """(records read ``read_committed`` from the start, sum of the end offsets); (0, 0) when
    the topic is missing. Reading stops at every end offset, or after ``idle`` seconds
    without a record (a position need not move past a last transaction marker)."""
    consumer = make_consumer(settings, f"bench-read-{uuid.uuid4().hex[:8]}")
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0, 0
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in metadata.partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        count, quiet_since = 0, time.monotonic()
        while time.monotonic() - quiet_since < idle:
            read = sum(1 for m in consumer.consume(10_000, 0.2) if m.error() is None)
            if read:
                count, quiet_since = count + read, time.monotonic()
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] for tp in positions):
                break
        return count, sum(ends.values())
    finally:
        consumer.close()


def _outputs(settings: Settings, topics: tuple[TopicRole, ...], events: int) -> dict[str, Any]:
    """Per output topic (one record per event expected): repeats and transaction markers."""
    catalogue = TopicCatalogue.from_settings(settings)
    found = {}
    for topic in topics:
        records, ends = read_to_end(settings, catalogue.name(topic))
        found[topic] = {"records": records, "repeats": records - events, "markers": ends - records}
    return found


def _run(part: str, guarantee: ProcessingGuarantee, args: argparse.Namespace, bootstrap: str,
         workdir: Path, broker_pid: int, attach: Attach | None = None) -> dict[str, Any]:
    from bench.full_loop import measure_full_loop
    from bench.scorer_rate import measure_scorer
    from riverops.roles.joiner.changelog import changelog_topic

    settings = bench_settings(bootstrap, workdir, partitions=args.partitions, guarantee=guarantee)
    register_champion(settings)
    if part == "scorer":
        figures = measure_scorer(settings, workdir, events=args.events, warmup=args.warmup,
                                 broker_pid=broker_pid, attach=attach)
        figures["outputs"] = _outputs(settings, ("predictions",), args.warmup + args.events)
        return figures
    figures = measure_full_loop(settings, workdir, events=args.loop_events, warmup=args.warmup,
                                broker_pid=broker_pid, attach=attach)
    figures["outputs"] = _outputs(settings, ("predictions", "feedback"), figures["total"])
    changelog = changelog_topic(settings, f"{settings.topic_prefix}g-joiner")
    figures["changelog_records_per_event"] = read_to_end(settings, changelog, idle=0.0)[1] / figures["total"]
    return figures


def _cpu(run: dict[str, Any]) -> float:
    """Worker CPU µs per event: the scorer's, or the sum of the loop's workers (no broker)."""
    cpu = run["cpu_us_per_event"]
    return float(cpu) if not isinstance(cpu, dict) else sum(v for k, v in cpu.items() if k != "broker")


def _sum(run: dict[str, Any], key: str) -> int:
    return sum(topic[key] for topic in run["outputs"].values())


def _broker_cpu(run: dict[str, Any]) -> float | None:
    cpu = run["cpu_us_per_event"]
    return cpu.get("broker") if isinstance(cpu, dict) else run.get("broker_cpu_us_per_event")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per part: each guarantee's medians over its rounds, and exactly_once / at_least_once
    of the medians (``ratio``) and of each round's pair (``round_ratios``)."""
    summary: dict[str, Any] = {}
    for part in PARTS:
        done = [r for r in runs if r["part"] == part and "error" not in r]
        by: dict[str, Any] = {}
        for guarantee in GUARANTEES:
            mine = [r for r in done if r["guarantee"] == guarantee]
            if not mine:
                continue
            by[guarantee] = {
                "rounds": len(mine),
                "events_per_s": statistics.median(r["events_per_s"] for r in mine),
                "events_per_s_range": [min(r["events_per_s"] for r in mine),
                                       max(r["events_per_s"] for r in mine)],
                "cpu_us_per_event": statistics.median(_cpu(r) for r in mine),
                "broker_cpu_us_per_event": statistics.median(_broker_cpu(r) or 0.0 for r in mine),
                "markers": statistics.median(_sum(r, "markers") for r in mine),
                "repeats": max(_sum(r, "repeats") for r in mine),
            }
            if part == "full_loop":
                roles = [k for k in mine[0]["cpu_us_per_event"] if k != "broker"]
                by[guarantee]["cpu_by_role"] = {
                    role: statistics.median(r["cpu_us_per_event"][role] for r in mine) for role in roles}
        if len(by) == len(GUARANTEES):
            eos, alo = by["exactly_once"], by["at_least_once"]
            by["ratio"] = {key: eos[key] / alo[key] for key in
                           ("events_per_s", "cpu_us_per_event", "broker_cpu_us_per_event") if alo[key]}
            by["round_ratios"] = _round_ratios(done)
        summary[part] = by
    return summary


def _round_ratios(done: list[dict[str, Any]]) -> list[dict[str, float]]:
    ratios = []
    for round_ in sorted({r["round"] for r in done}):
        pair = {r["guarantee"]: r for r in done if r["round"] == round_}
        if len(pair) == len(GUARANTEES):
            eos, alo = pair["exactly_once"], pair["at_least_once"]
            ratios.append({"round": round_, "events_per_s": eos["events_per_s"] / alo["events_per_s"],
                           "cpu_us_per_event": _cpu(eos) / _cpu(alo)})
    return ratios


def _measure(args: argparse.Namespace, bootstrap: str, workdir: Path, broker_pid: int,
             console: Console) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    runs: list[dict[str, Any]] = []

    def one(part: str, guarantee: ProcessingGuarantee, round_: int | str,
            attach: Attach | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            run = _run(part, guarantee, args, bootstrap, workdir, broker_pid, attach)
        except Exception as exc:  # a failed run is reported, the others still run
            console.log(f"[red]{part} {guarantee} round {round_} failed: {type(exc).__name__}: {exc}")
            return {"part": part, "guarantee": guarantee, "round": round_,
                    "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)}
        console.log(f"{part:9} {guarantee:13} round {round_}: {run['events_per_s']:8,.0f} events/s, "
                    f"{_cpu(run):6.1f} µs CPU/event, markers {_sum(run, 'markers')}, "
                    f"repeats {_sum(run, 'repeats')} "
                    f"({time.perf_counter() - started:.0f} s)")
        return {"part": part, "guarantee": guarantee, "round": round_, **run}

    for round_ in range(1, args.rounds + 1):
        order = GUARANTEES if round_ % 2 else GUARANTEES[::-1]
        for part in PARTS:
            runs += [one(part, guarantee, round_) for guarantee in order]
    profiles: dict[str, Any] = {}
    if args.profile and pyspy.available() is None:
        profiles["error"] = "py-spy is not installed (pip install py-spy)"
    elif args.profile:
        raw = args.keep_profiles or workdir / "pyspy"
        for part in PARTS:
            for guarantee in GUARANTEES:
                label = f"{part}-{guarantee}"
                run = one(part, guarantee, "profile", pyspy.attach(raw, label))
                profiles[label] = {"run": run, "loop_wall_share": _shares(raw, label)}
    return runs, profiles


def _shares(raw: Path, label: str) -> dict[str, dict[str, float]]:
    return {path.stem.removeprefix(f"{label}-"): pyspy.buckets(path)
            for path in sorted(raw.glob(f"{label}-*.txt"))}


def _rebucket(args: argparse.Namespace) -> None:
    section = json.loads((args.output / "results.json").read_text())["guarantees"]
    for label, profile in section["profile"].items():
        if isinstance(profile, dict):
            profile["loop_wall_share"] = _shares(args.rebucket, label)
    report.merge_section(args.output, "guarantees", section)


def main(argv: list[str] | None = None) -> None:
    args = _options(argv)
    console = Console()
    if args.rebucket is not None:
        _rebucket(args)
        return
    from riverops.kafka.cluster import KafkaCluster
    from riverops.kafka.jars import kafka_version

    machine = describe(None)
    machine["broker"] = "kafka"
    machine["broker_version"] = f"Apache Kafka {kafka_version()} (KRaft, 1 node, started by the bench)"
    with tempfile.TemporaryDirectory(prefix="riverops-bench-kafka-") as tmp:
        workdir = Path(tmp)
        cluster = KafkaCluster(data_dir=workdir / "kafka").start()
        console.log(f"{machine['broker_version']} on {cluster.bootstrap_servers}")
        try:
            runs, profiles = _measure(args, cluster.bootstrap_servers, workdir, cluster.pid, console)
        finally:
            cluster.remove()
    section = {"machine": machine,
               "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "runs": runs, "summary": summarize(runs), "profile": profiles}
    as_json, as_md = report.merge_section(args.output, "guarantees", section)
    console.print("\n".join(report.guarantees_markdown(section)))
    console.log(f"wrote the guarantees section of {as_json} and {as_md}")


if __name__ == "__main__":
    main()
