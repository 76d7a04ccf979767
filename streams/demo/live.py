"""The demo's live terminal view, drawn from the worker's own Prometheus registry."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Group
from rich.table import Table

__all__ = ["Snapshot", "take_snapshot", "render_live"]


@dataclass
class Snapshot:
    """The figures the live view shows, read from the registry at one moment."""

    at: float
    events_in: dict[tuple[str, str], float] = field(default_factory=dict)  # (role, topic)
    events_out: dict[tuple[str, str], float] = field(default_factory=dict)
    lag: dict[tuple[str, str], float] = field(default_factory=dict)  # (group, topic) summed
    metrics: dict[tuple[str, str, str, str], float] = field(default_factory=dict)  # model, version, variant, metric
    samples: dict[tuple[str, str, str], float] = field(default_factory=dict)
    alarms: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, detector)
    aliases: dict[tuple[str, str], float] = field(default_factory=dict)
    pending: float = 0.0
    dead_letters: float = 0.0


def take_snapshot(registry: CollectorRegistry) -> Snapshot:
    snap = Snapshot(at=time.monotonic())
    lag: dict[tuple[str, str], float] = defaultdict(float)
    for family in registry.collect():
        for s in family.samples:
            labels, value = s.labels, s.value
            if s.name == "riverops_events_in_total":
                snap.events_in[(labels["role"], labels["topic"])] = value
            elif s.name == "riverops_events_out_total":
                snap.events_out[(labels["role"], labels["topic"])] = value
            elif s.name == "riverops_consumer_lag":
                lag[(labels["group"], labels["topic"])] += value
            elif s.name == "riverops_model_metric" and labels["window"] == "count":
                key = (labels["model"], labels["version"], labels["variant"], labels["metric"])
                snap.metrics[key] = value
            elif s.name == "riverops_model_samples":
                snap.samples[(labels["model"], labels["version"], labels["variant"])] = value
            elif s.name == "riverops_drift_alarms_total":
                alarm = (labels["kind"], labels["detector"])
                snap.alarms[alarm] = snap.alarms.get(alarm, 0.0) + value
            elif s.name == "riverops_model_alias_version":
                snap.aliases[(labels["model"], labels["alias"])] = value
            elif s.name == "riverops_join_pending_items":
                snap.pending = value
            elif s.name == "riverops_dead_letters_total":
                snap.dead_letters += value
    snap.lag = dict(lag)
    return snap


def _short(topic: str) -> str:
    return topic.rsplit(".", 1)[-1]


def render_live(now: Snapshot, before: Snapshot | None, *, header: str, notes: list[str],
                window: int | None = None) -> Group:
    """Tables for one refresh: throughput per stage, lag, rolling metrics (ROC AUC first:
    on a 1-4% fraud stream accuracy says little; ``window`` is the monitor's count window),
    alarms, events."""
    elapsed = max(now.at - before.at, 1e-6) if before else 1.0
    stages = Table(title="throughput", title_justify="left")
    for column in ("stage", "in topic", "total in", "per s"):
        stages.add_column(column, justify="left" if column in ("stage", "in topic") else "right")
    for (role, topic), total in sorted(now.events_in.items()):
        rate = (total - before.events_in.get((role, topic), 0.0)) / elapsed if before else 0.0
        stages.add_row(role, _short(topic), f"{total:,.0f}", f"{rate:,.0f}")
    lag = Table(title="consumer lag", title_justify="left")
    lag.add_column("group")
    lag.add_column("topic")
    lag.add_column("lag", justify="right")
    for (group, topic), value in sorted(now.lag.items()):
        lag.add_row(group, _short(topic), f"{value:,.0f}")
    over = f" over its last {window:,} labelled outcomes" if window else ""
    models = Table(title=f"rolling metrics, each version and variant{over}", title_justify="left")
    for column in ("model", "version", "variant", "outcomes (all)", "ROC AUC", "recall @0.5", "accuracy"):
        models.add_column(column, justify="left" if column in ("model", "variant") else "right")
    by_version = sorted(now.samples.items(), key=lambda kv: (kv[0][0], int(kv[0][1]), kv[0][2]))
    for (model, version, variant), samples in by_version:
        values = [now.metrics.get((model, version, variant, m)) for m in ("roc_auc", "recall", "accuracy")]
        models.add_row(model, f"v{version}", variant, f"{samples:,.0f}",
                       *(f"{v:.4f}" if v is not None else "" for v in values))
    aliases = ", ".join(f"{m} {a}=v{v:.0f}" for (m, a), v in sorted(now.aliases.items()))
    alarms = ", ".join(f"{kind}/{detector}: {n:.0f}" for (kind, detector), n in sorted(now.alarms.items())) or "none"
    summary = Table.grid(padding=(0, 2))
    summary.add_row("aliases", aliases or "none")
    summary.add_row("drift alarms", alarms)
    summary.add_row("join pending", f"{now.pending:,.0f}")
    summary.add_row("dead letters", f"{now.dead_letters:,.0f}")
    parts: list[Any] = [header, stages, lag, models, summary]
    if notes:
        events = Table(title="recent events", title_justify="left", show_header=False)
        events.add_column("event")
        for note in notes[-8:]:
            events.add_row(note)
        parts.append(events)
    return Group(*parts)
