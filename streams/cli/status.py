"""``riverops status``: lag, models and aliases, rolling metrics, the scorer's estimates
before labels beside the realised figures (:mod:`riverops.cli.estimates`), recent drift alarms."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from riverops.cli.common import broker_settings, cli_errors
from riverops.cli.estimates import (
    calibration,
    combine,
    estimate_rows,
    estimates_table,
    scrape_estimates,
)
from riverops.kafka.clients import at_end, make_consumer
from riverops.kafka.lag import LagProbe
from riverops.kafka.registry_topic import read_registry
from riverops.kafka.topics import TopicCatalogue, TopicRole
from riverops.settings import Settings

__all__ = ["read_to_end", "read_tail", "collect_status", "render_status", "status_command"]


def read_to_end(settings: Settings, role: TopicRole, schema: str, *, timeout: float = 10.0,
                last: int | None = None) -> list[dict[str, Any]]:
    """Every decodable record of a topic, from the start (or about the ``last`` records of
    each partition: from its watermarks as the broker gives them) to the high watermark."""
    catalogue = TopicCatalogue.from_settings(settings)
    spec = catalogue.spec(role)
    codec = settings.codec()
    consumer = make_consumer(settings, f"riverops-status-reader-{uuid.uuid4().hex[:6]}")
    partitions = [TopicPartition(spec.name, p, OFFSET_BEGINNING) for p in range(spec.partitions)]
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        if last is not None:
            partitions = [tp for tp in partitions if _from_last(consumer, tp, last, timeout)]
        consumer.assign(partitions)
        while time.monotonic() < deadline:
            messages = consumer.consume(5000, 0.2)
            for message in messages:
                if message.error() is None:
                    try:
                        out.append(codec.decode(schema, message.value()))
                    except Exception:  # a bad record is the dead-letter topic's business
                        continue
            if messages:
                continue
            if at_end(consumer, [(tp.topic, tp.partition) for tp in partitions]):
                break
    finally:
        consumer.close()
    return out


def _from_last(consumer: Consumer, tp: TopicPartition, last: int, timeout: float) -> bool:
    """Start ``tp`` ``last`` records before its end; False when the broker has no such
    partition (the topic has fewer than the settings say)."""
    try:
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
    except KafkaException:
        return False
    tp.offset = max(low, high - last)
    return True


def read_tail(settings: Settings, role: TopicRole, schema: str, *, last: int,
              timeout: float = 10.0) -> list[dict[str, Any]]:
    """The last ``last`` decodable records of each partition of a topic."""
    return read_to_end(settings, role, schema, timeout=timeout, last=last)


def collect_status(settings: Settings, *, recent_alarms: int = 10,
                   scorer_metrics: Sequence[str] = (), calibration_tail: int = 2000) -> dict[str, Any]:
    """Everything the status view shows, as JSON-ready data. ``scorer_metrics``: the
    /metrics URLs of the scorers whose estimates are shown; ``calibration_tail``: feedback
    records per partition their calibration is checked on (0: not checked)."""
    scraped, errors = scrape_estimates(scorer_metrics)  # first: the scores of now
    with LagProbe(settings) as probe:
        lag = [row.__dict__ for row in probe.sample()]
    registry = read_registry(settings)
    latest: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for event in read_to_end(settings, "metrics", "MetricsEvent"):
        latest[(event["model"], event["version"], event["variant"], event["window_kind"])] = event
    alarms = read_to_end(settings, "drift", "DriftEvent")[-recent_alarms:]
    checked = calibration(read_tail(settings, "feedback", "FeedbackEvent", last=calibration_tail)
                          ) if calibration_tail and scraped else {}
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "lag": lag,
        "models": [
            {"model": v.model, "version": v.version, "stage": v.stage, "share": v.share,
             "spec": v.spec, "changed_by": v.changed_by, "reason": v.reason}
            for m in registry.models for v in registry.versions(m)
        ],
        "aliases": registry.aliases(),
        "metrics": [
            {**{k: v for k, v in e.items() if k != "emitted_at"}, "emitted_at": e["emitted_at"].isoformat()}
            for _, e in sorted(latest.items())
        ],
        "estimates": estimate_rows(combine(scraped), latest.values(), checked),
        "estimate_sources": list(scorer_metrics),
        "estimate_errors": errors,
        "drift_alarms": [{**a, "detected_at": a["detected_at"].isoformat()} for a in alarms],
    }


def render_status(status: dict[str, Any]) -> Group:
    """Rich tables for the terminal."""
    lag = Table(title="consumer lag", title_justify="left")
    for column in ("group", "topic", "partition", "committed", "high", "lag"):
        lag.add_column(column, justify="right" if column in ("partition", "committed", "high", "lag") else "left")
    for row in status["lag"]:
        lag.add_row(row["group"], row["topic"], str(row["partition"]), str(row["committed"]),
                    str(row["high"]), f"[{'red' if row['lag'] > 10_000 else 'green'}]{row['lag']}[/]")
    models = Table(title="models", title_justify="left")
    for column in ("model", "version", "stage", "share", "spec", "changed by", "reason"):
        models.add_column(column)
    for v in status["models"]:
        models.add_row(v["model"], str(v["version"]), v["stage"], f"{v['share']:.2f}" if v["share"] else "",
                       v["spec"], v["changed_by"], v["reason"])
    metrics = Table(title="rolling metrics (latest per version, variant and window)", title_justify="left")
    for column in ("model", "version", "variant", "window", "samples", "accuracy", "roc_auc", "f1", "mae"):
        metrics.add_column(column)
    for e in status["metrics"]:
        values = e["metrics"]
        metrics.add_row(
            e["model"], str(e["version"]), e["variant"], f"{e['window_kind']}:{e['window_size']:g}",
            str(e["samples"]), *_cells(values, ("accuracy", "roc_auc", "f1", "mae")),
        )
    segments = segments_table(status["metrics"])
    drift = Table(title="recent drift alarms", title_justify="left")
    for column in ("when", "model", "version", "variant", "kind", "detector", "feature", "statistic"):
        drift.add_column(column)
    for a in status["drift_alarms"]:
        drift.add_row(a["detected_at"], a["model"], str(a["version"]), a["variant"], a["kind"],
                      a["detector"], a["feature"] or "", f"{a['statistic']:.4f}")
    estimates = estimates_table(status.get("estimates", []), status.get("estimate_errors", []),
                                status.get("estimate_sources", []))
    return Group(lag, models, metrics, *([segments] if segments.row_count else []), estimates, drift)


def segments_table(metrics_events: Sequence[dict[str, Any]]) -> Table:
    """The segments of each version's count window (RIVEROPS_MONITOR__SEGMENT_BY), worst
    ROC AUC (else accuracy, else MAE reversed) first within a feature: where it hurts shows."""
    shown = ("accuracy", "roc_auc", "recall", "mae")
    table = Table(title="metrics per segment (count windows)", title_justify="left")
    for column in ("model", "version", "variant", "feature", "value", "samples", *shown):
        table.add_column(column)

    def badness(segment: dict[str, Any]) -> tuple[str, float]:
        values = segment["metrics"]
        for name, sign in (("roc_auc", 1.0), ("accuracy", 1.0), ("mae", -1.0)):
            if name in values:
                return segment["feature"], sign * values[name]
        return segment["feature"], 0.0

    for e in metrics_events:
        for segment in sorted(e.get("segments") or (), key=badness):
            table.add_row(e["model"], str(e["version"]), e["variant"], segment["feature"], segment["value"],
                          str(segment["samples"]), *_cells(segment["metrics"], shown))
    return table


def _cells(values: dict[str, float], names: Sequence[str]) -> list[str]:
    """The named metrics to four decimals, blank where a task has none."""
    return [f"{values[k]:.4f}" if k in values else "" for k in names]


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--watch", type=float, metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")
@click.option("--scorer-metrics", "scorer_metrics", multiple=True, metavar="URL",
              help="A scorer's /metrics, where the estimates before labels are read (repeat for "
              "each replica; default: this machine's RIVEROPS_METRICS_HOST and _PORT, where "
              "`riverops worker all` serves them).")
@click.option("--calibration-tail", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Feedback records per partition the estimates' calibration is checked on (0: "
              "not checked).")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool, watch: float | None,
                   scorer_metrics: tuple[str, ...], calibration_tail: int) -> None:
    """Lag per group and partition, models and aliases, rolling metrics, the estimates before
    labels beside the realised figures, drift alarms."""
    settings = broker_settings(ctx)
    urls = scorer_metrics or (f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",)

    def collect() -> dict[str, Any]:
        return collect_status(settings, scorer_metrics=urls, calibration_tail=calibration_tail)

    try:
        with cli_errors():
            if as_json:
                click.echo(json.dumps(collect(), indent=2, default=str))
                return
            if not watch:
                Console().print(render_status(collect()))
                return
            with Live(render_status(collect()), console=Console(), screen=False) as live:
                while True:
                    time.sleep(watch)
                    live.update(render_status(collect()))
    except KeyboardInterrupt:
        return
