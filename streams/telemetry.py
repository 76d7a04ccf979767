"""The Prometheus metrics of a riverops service: one typed bundle on an injected registry.

Every metric carries a ``role`` label (scorer, joiner, monitor, ...) so dashboards can sum
across services; durations are in seconds. Nothing touches the global registry: a process
builds one :class:`Telemetry` on its own :class:`~prometheus_client.CollectorRegistry`
and exposes it with :func:`serve`.

Examples
--------
>>> from prometheus_client import CollectorRegistry, generate_latest
>>> telemetry = Telemetry(CollectorRegistry(), role="monitor")
>>> telemetry.count_in("feedback", 3)
>>> b'riverops_events_in_total{role="monitor",topic="feedback"} 3.0' in generate_latest(
...     telemetry.registry)
True
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from riverops.schemas.events import Variant, WindowKind

__all__ = [
    "Telemetry",
    "MonitorRow",
    "MetricsServer",
    "serve",
    "LATENCY_BUCKETS",
    "LABEL_DELAY_BUCKETS",
]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
"""Seconds a batch spends in one processing stage: sub-millisecond to a slow flush."""

_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
LABEL_DELAY_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 15.0, 30.0, _MINUTE, 5 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE, _HOUR, 3 * _HOUR,
    6 * _HOUR, 12 * _HOUR, _DAY, 2 * _DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY,
)
"""Seconds from an event to its label: labels arrive seconds to days late."""


class MonitorRow(Protocol):
    """What :meth:`Telemetry.export_monitor` reads (``riverops.roles.monitor.KeyStatus`` fits)."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def variant(self) -> Variant: ...
    @property
    def samples(self) -> int: ...
    @property
    def metrics(self) -> Mapping[WindowKind, Mapping[str, float]]: ...
    @property
    def segments(self) -> Sequence[SegmentRow]: ...


class SegmentRow(Protocol):
    """One segment of a :class:`MonitorRow` (``riverops.roles.monitor.SegmentStatus`` fits)."""

    @property
    def feature(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def samples(self) -> int: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...


class Telemetry:
    """Counters, gauges and histograms of one service, registered on ``registry``.

    The metric objects are public for unusual uses; the methods fill the ``role`` label.
    """

    def __init__(
        self, registry: CollectorRegistry, *, role: str, namespace: str = "riverops"
    ) -> None:
        self.registry = registry
        self.role = role

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ("role", *labels), namespace=namespace, registry=registry)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, ("role", *labels), namespace=namespace, registry=registry)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(
                name, doc, ("role", *labels), namespace=namespace, registry=registry,
                buckets=buckets,
            )

        self.events_in = counter("events_in", "Records consumed.", "topic")
        self.events_out = counter("events_out", "Records produced.", "topic")
        self.latency = histogram(
            "processing_seconds", "Time spent per batch in a stage.", LATENCY_BUCKETS, "stage"
        )
        self.model_metric = gauge(
            "model_metric", "Rolling metric of a model version and variant over a window.",
            "model", "version", "variant", "metric", "window",
        )
        self.model_samples = gauge(
            "model_samples", "Labelled outcomes seen per model version and variant.",
            "model", "version", "variant",
        )
        self.segment_metric = gauge(
            "segment_metric", "Rolling metric of one value of a segmented feature "
            "(RIVEROPS_MONITOR__SEGMENT_BY) over its count window.",
            "model", "version", "variant", "feature", "value", "metric",
        )
        self.segment_samples = gauge(
            "segment_samples", "Labelled outcomes seen per value of a segmented feature.",
            "model", "version", "variant", "feature", "value",
        )
        self.estimated_metric = gauge(
            "estimated_metric", "Metric a binary model version and variant should have, "
            "estimated from its last scores before any label (CBPE: calibrated scores assumed).",
            "model", "version", "variant", "metric",
        )
        self.estimated_samples = gauge(
            "estimated_samples", "Scores in the window of the estimated metrics.",
            "model", "version", "variant",
        )
        self.estimated_scores = gauge(
            "estimated_scores", "Scores of that window in each logit bin (riverops.models."
            "recalibrate.EDGES): what recalibrates the estimate where labels are.",
            "model", "version", "variant", "bin",
        )
        self.online_metric = gauge(
            "online_metric", "Progressive metric of the online variant since it started "
            "(each prediction scored before its label is learned).", "model", "metric",
        )
        self.data_drift_score = gauge(
            "data_drift_score", "Latest PSI or KS statistic of a feature against its reference.",
            "model", "feature", "detector",
        )
        self.drift_alarms = counter(
            "drift_alarms", "Drift alarms published (a concept signal that got worse, or a "
            "shifted feature).",
            "model", "version", "variant", "kind", "detector", "feature", "signal",
        )
        self.label_delay = histogram(
            "label_delay_seconds", "Event time to label time.", LABEL_DELAY_BUCKETS, "model"
        )
        self.pending_items = gauge("join_pending_items", "Items waiting in the join state.")
        self.state_entries = gauge(
            "state_entries", "Entries held by each bounded per-event structure of a role "
            "(docs/reliability.md, Memory bounds), refreshed at each commit.", "structure",
        )
        self.pending_bytes = gauge("join_pending_bytes", "Bytes held by the join state.")
        self.expired = counter("join_expired", "Join items dropped by the TTL.", "kind")
        self.dead_letters = counter(
            "dead_letters", "Records sent to the dead-letter topic.", "topic", "error_type"
        )
        self.alias_version = gauge(
            "model_alias_version", "Version an alias (champion, ...) points to.", "model", "alias"
        )
        self.consumer_lag = gauge(
            "consumer_lag", "Records behind the high watermark.", "group", "topic", "partition"
        )
        self.assigned_partitions = gauge(
            "assigned_partitions", "Partitions assigned to the role's consumer; the series "
            "appears when the role has joined its group (0: a standby), the healthcheck reads it.",
        )
        self.registry_refusals = counter(
            "registry_refusals", "Registry changes refused.", "model", "reason"
        )
        self.versions_created = counter(
            "versions_created", "Model versions registered by this role (snapshots, retrains).",
            "model",
        )
        self.retrain_decisions = counter(
            "retrain_decisions",
            "Retrainer outcomes: promote, challenger, reject, rollback, failed.", "model", "decision",
        )
        self.transactions_aborted = counter(
            "transactions_aborted", "Exactly once: transactions aborted (each followed by a "
            "rewind to the committed offsets).",
        )
        self.producer_renewals = counter(
            "producer_renewals", "Exactly once: transactional producers replaced under the same "
            "id (fenced, or a call that never returned).",
        )
        self._exported: dict[Gauge, set[tuple[str, ...]]] = {}

    def for_role(self, role: str) -> Telemetry:
        """The same metrics labelled with another role (several roles in one process)."""
        view = copy.copy(self)
        view.role = role
        view._exported = {}
        return view

    def count_abort(self, *, renewed: int = 0) -> None:
        """Count an aborted transaction and the producers replaced since the last one."""
        self.transactions_aborted.labels(self.role).inc()
        if renewed:
            self.producer_renewals.labels(self.role).inc(renewed)

    def count_in(self, topic: str, n: int = 1) -> None:
        """Count ``n`` records consumed from ``topic``."""
        self.events_in.labels(self.role, topic).inc(n)

    def count_out(self, topic: str, n: int = 1) -> None:
        """Count ``n`` records produced to ``topic``."""
        self.events_out.labels(self.role, topic).inc(n)

    def observe_latency(self, stage: str, seconds: float) -> None:
        """Record the seconds one batch spent in ``stage``."""
        self.latency.labels(self.role, stage).observe(seconds)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time the enclosed block as one observation of ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_latency(stage, time.perf_counter() - start)

    def count_drift(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Count DriftEvent dicts (a missing feature or signal is the empty label)."""
        for e in events:
            self.drift_alarms.labels(
                self.role, e["model"], str(e["version"]), e["variant"], e["kind"],
                e["detector"], e.get("feature") or "", e.get("signal") or "",
            ).inc()

    def observe_label_delays(self, delays: Mapping[str, Iterable[float]]) -> None:
        """Record how long labels took to arrive after their events: seconds by model
        (a batch: one label lookup per model)."""
        for model, seconds in delays.items():
            observe = self.label_delay.labels(self.role, model).observe
            for value in seconds:
                observe(value)

    def set_pending(self, *, items: int, nbytes: int) -> None:
        """Set the size of the join state."""
        self.pending_items.labels(self.role).set(items)
        self.pending_bytes.labels(self.role).set(nbytes)

    def set_state(self, sizes: Mapping[str, int]) -> None:
        """Set the entries of each bounded structure (``structure`` -> entries)."""
        for structure, entries in sizes.items():
            self.state_entries.labels(self.role, structure).set(entries)

    def count_expired(self, kind: str, n: int = 1) -> None:
        """Count join items of ``kind`` (features, prediction, label) dropped by the TTL."""
        self.expired.labels(self.role, kind).inc(n)

    def count_dead_letter(self, topic: str, error_type: str) -> None:
        """Count one record from ``topic`` dead-lettered with ``error_type``."""
        self.dead_letters.labels(self.role, topic, error_type).inc()

    def set_alias(self, model: str, alias: str, version: int) -> None:
        """Record that ``alias`` of ``model`` now points to ``version``."""
        self.alias_version.labels(self.role, model, alias).set(version)

    def set_assigned(self, partitions: int) -> None:
        """Set how many partitions the role's consumer holds (after each rebalance)."""
        self.assigned_partitions.labels(self.role).set(partitions)

    def set_lag(self, group: str, topic: str, partition: int, lag: int) -> None:
        """Set the lag of ``group`` on one topic partition."""
        self.consumer_lag.labels(self.role, group, topic, str(partition)).set(lag)

    def count_version(self, model: str) -> None:
        """Count one model version registered by this role."""
        self.versions_created.labels(self.role, model).inc()

    def count_decision(self, model: str, decision: str) -> None:
        """Count one retrainer outcome (promote, challenger, reject, rollback, failed)."""
        self.retrain_decisions.labels(self.role, model, decision).inc()

    def count_refusal(self, model: str, reason: str) -> None:
        """Count one registry change refused for ``reason``."""
        self.registry_refusals.labels(self.role, model, reason).inc()

    def export_monitor(
        self,
        rows: Iterable[MonitorRow],
        data_drift: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    ) -> None:
        """Set the model gauges from the monitor's current values.

        Series that are no longer reported (an emptied time window, a gone feature) are
        removed rather than left frozen at their last value.
        """
        metric_values: dict[tuple[str, ...], float] = {}
        sample_values: dict[tuple[str, ...], float] = {}
        segment_values: dict[tuple[str, ...], float] = {}
        segment_samples: dict[tuple[str, ...], float] = {}
        for row in rows:
            key = (self.role, row.model, str(row.version), row.variant)
            sample_values[key] = row.samples
            for window, values in row.metrics.items():
                for name, value in values.items():
                    metric_values[(*key, name, window)] = value
            for segment in row.segments:
                where = (*key, segment.feature, segment.value)
                segment_samples[where] = segment.samples
                for name, value in segment.metrics.items():
                    segment_values[(*where, name)] = value
        drift_values: dict[tuple[str, ...], float] = {
            (self.role, model, feature, detector): value
            for model, features in (data_drift or {}).items()
            for feature, scores in features.items()
            for detector, value in scores.items()
        }
        self._replace(self.model_metric, metric_values)
        self._replace(self.model_samples, sample_values)
        self._replace(self.segment_metric, segment_values)
        self._replace(self.segment_samples, segment_samples)
        self._replace(self.data_drift_score, drift_values)

    def export_estimates(
        self, estimates: Mapping[tuple[str, int, str], tuple[int, Mapping[str, float]]],
        bins: Mapping[tuple[str, int, str], Iterable[int]] | None = None,
    ) -> None:
        """Set the estimated metrics ((model, version, variant) -> (scores in the window,
        metric -> value)) and the window's score bins; a version, metric or bin no longer
        reported is removed."""
        metric_values: dict[tuple[str, ...], float] = {}
        sample_values: dict[tuple[str, ...], float] = {}
        for (model, version, variant), (samples, values) in estimates.items():
            key = (self.role, model, str(version), variant)
            sample_values[key] = samples
            for name, value in values.items():
                metric_values[(*key, name)] = value
        bin_values: dict[tuple[str, ...], float] = {
            (self.role, model, str(version), variant, str(i)): float(count)
            for (model, version, variant), counts in (bins or {}).items()
            for i, count in enumerate(counts)
        }
        self._replace(self.estimated_metric, metric_values)
        self._replace(self.estimated_samples, sample_values)
        self._replace(self.estimated_scores, bin_values)

    def export_online(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        """Set the online variant's progressive metrics (model -> metric -> value); a metric
        no longer reported is removed."""
        self._replace(self.online_metric, {
            (self.role, model, name): value
            for model, values in metrics.items() for name, value in values.items()
        })

    def _replace(self, gauge: Gauge, values: Mapping[tuple[str, ...], float]) -> None:
        for labels in self._exported.get(gauge, set()) - values.keys():
            gauge.remove(*labels)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        self._exported[gauge] = set(values)


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running /metrics HTTP server; ``close()`` stops it and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` on http://host:port/metrics from a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
