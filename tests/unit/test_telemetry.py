"""The Prometheus bundle, scraped over loopback HTTP from a fresh registry per test."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from riverops.roles.monitor import MonitorCore
from riverops.telemetry import LABEL_DELAY_BUCKETS, MetricsServer, Telemetry, serve

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    running = serve(registry, "127.0.0.1", 0)
    yield running
    running.close()


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics as (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_counters_histograms_and_gauges_are_served(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    t = Telemetry(registry, role="joiner")
    t.count_in("features", 10)
    t.count_in("features")
    t.count_out("feedback", 4)
    t.observe_latency("join", 0.003)
    with t.timed("produce"):
        pass
    t.observe_label_delays({"fraud": [2 * 3600.0, 3 * 86400.0]})
    t.set_pending(items=12, nbytes=4096)
    t.count_expired("prediction", 3)
    t.count_dead_letter("labels", "DecodeError")
    t.set_alias("fraud", "champion", 7)
    t.set_lag("g1", "features", 2, 150)
    t.count_refusal("fraud", "unsigned")
    got = scrape(server)
    assert got["riverops_events_in_total", labels(role="joiner", topic="features")] == 11
    assert got["riverops_events_out_total", labels(role="joiner", topic="feedback")] == 4
    assert got["riverops_processing_seconds_count", labels(role="joiner", stage="join")] == 1
    assert got["riverops_processing_seconds_count", labels(role="joiner", stage="produce")] == 1
    delay = labels(role="joiner", model="fraud")
    assert got["riverops_label_delay_seconds_count", delay] == 2
    assert got["riverops_label_delay_seconds_sum", delay] == 2 * 3600.0 + 3 * 86400.0
    bucket = dict(delay)
    assert got["riverops_label_delay_seconds_bucket", labels(**bucket, le="3600.0")] == 0
    assert got["riverops_label_delay_seconds_bucket", labels(**bucket, le="86400.0")] == 1
    assert got["riverops_label_delay_seconds_bucket", labels(**bucket, le="+Inf")] == 2
    assert got["riverops_join_pending_items", labels(role="joiner")] == 12
    assert got["riverops_join_pending_bytes", labels(role="joiner")] == 4096
    assert got["riverops_join_expired_total", labels(role="joiner", kind="prediction")] == 3
    assert (
        got[
            "riverops_dead_letters_total",
            labels(role="joiner", topic="labels", error_type="DecodeError"),
        ]
        == 1
    )
    assert (
        got["riverops_model_alias_version", labels(role="joiner", model="fraud", alias="champion")]
        == 7
    )
    assert (
        got[
            "riverops_consumer_lag",
            labels(role="joiner", group="g1", topic="features", partition="2"),
        ]
        == 150
    )
    assert (
        got[
            "riverops_registry_refusals_total",
            labels(role="joiner", model="fraud", reason="unsigned"),
        ]
        == 1
    )
    assert min(LABEL_DELAY_BUCKETS) <= 1.0 and max(LABEL_DELAY_BUCKETS) >= 7 * 86400.0


def feedback(event_id: str, label: bool, prediction: bool, at: float, x: float) -> dict[str, Any]:
    t = T0 + timedelta(seconds=at)
    return {
        "event_id": event_id,
        "model": "fraud",
        "entity_id": "c",
        "event_time": t,
        "features": {"x": x},
        "label": label,
        "label_time": t,
        "predictions": [
            {
                "version": 3,
                "variant": "champion",
                "prediction": prediction,
                "scores": {"True": float(prediction), "False": 1.0 - float(prediction)},
            }
        ],
    }


def test_monitor_values_and_drift_alarms_are_exported(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    from riverops.roles.monitor import DataDriftOptions

    core = MonitorCore(
        time_window=60.0, data_drift=DataDriftOptions(reference_size=20, window_size=20, every=20)
    )
    t = Telemetry(registry, role="monitor")
    drift = core.update(
        [
            feedback(f"e{i}", True, i % 4 != 0, at=i, x=float(i % 5) + (50.0 if i >= 20 else 0.0))
            for i in range(40)
        ]
    )
    t.count_drift(drift)
    now = T0 + timedelta(seconds=40)
    t.export_monitor(core.status(now), core.data_drift_scores())
    got = scrape(server)
    key = {"role": "monitor", "model": "fraud", "version": "3", "variant": "champion"}
    assert got["riverops_model_samples", labels(**key)] == 40
    assert got["riverops_model_metric", labels(**key, metric="accuracy", window="count")] == 0.75
    assert got["riverops_model_metric", labels(**key, metric="window_samples", window="time")] == 40
    assert (
        got[
            "riverops_data_drift_score",
            labels(role="monitor", model="fraud", feature="x", detector="KS"),
        ]
        == 1.0
    )
    alarm = labels(**key, kind="data", detector="PSI", feature="x", signal="")
    assert got["riverops_drift_alarms_total", alarm] == 1
    # the time window empties: its series go away instead of freezing at the last value
    t.export_monitor(core.status(now + timedelta(hours=1)), core.data_drift_scores())
    got = scrape(server)
    assert ("riverops_model_metric", labels(**key, metric="accuracy", window="time")) not in got
    assert got["riverops_model_metric", labels(**key, metric="accuracy", window="count")] == 0.75


def test_online_metrics_are_exported_and_replaced(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    t = Telemetry(registry, role="online")
    t.export_online({"fraud": {"accuracy": 0.9, "roc_auc": 0.95}, "price": {"mae": 1.5}})
    got = scrape(server)
    assert got["riverops_online_metric", labels(role="online", model="fraud", metric="roc_auc")] == 0.95
    assert got["riverops_online_metric", labels(role="online", model="price", metric="mae")] == 1.5
    t.export_online({"fraud": {"accuracy": 0.8}})
    got = scrape(server)
    assert got["riverops_online_metric", labels(role="online", model="fraud", metric="accuracy")] == 0.8
    assert ("riverops_online_metric", labels(role="online", model="price", metric="mae")) not in got


def test_bundles_use_only_their_own_registry() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Telemetry(first, role="scorer").count_in("features")
    Telemetry(second, role="scorer")  # no clash: nothing is global
    assert (
        first.get_sample_value("riverops_events_in_total", {"role": "scorer", "topic": "features"})
        == 1
    )
    assert (
        second.get_sample_value("riverops_events_in_total", {"role": "scorer", "topic": "features"})
        is None
    )
    assert (
        prometheus_client.REGISTRY.get_sample_value(
            "riverops_events_in_total", {"role": "scorer", "topic": "features"}
        )
        is None
    )


def test_the_server_stops_and_frees_its_port(registry: CollectorRegistry) -> None:
    running = serve(registry, "127.0.0.1", 0)
    port = running.port
    assert port > 0
    running.close()
    assert not running.thread.is_alive()
    again = serve(registry, "127.0.0.1", port)
    again.close()
