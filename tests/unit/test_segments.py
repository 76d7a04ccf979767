"""Metrics per segment: a problem confined to one value of a feature shows in that value's
metrics while the whole hides it; the values are capped; the metrics equal River's on the
segment's outcomes; they travel in MetricsEvent v2 (old readers unaffected) and the gauges."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from prometheus_client import CollectorRegistry
from river import linear_model, metrics, preprocessing
from river.datasets import synth

from riverops.roles.monitor import MonitorCore
from riverops.roles.monitor.segments import MISSING, OTHER, SegmentOptions
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.events import MetricsEvent
from riverops.sections import MonitorSettings
from riverops.telemetry import Telemetry

T0 = datetime(2026, 11, 1, tzinfo=UTC)
COUNTRIES = ("FR", "DE", "IT", "ES", "NL")


def regional_stream(n: int, *, broken: str = "NL", seed: int = 7) -> list[dict[str, Any]]:
    """Feedback of a real River logreg on SEA, learning as it goes, every event from one
    of five countries; in ``broken`` the label is the opposite of the concept (a local
    problem: fraud there looks like legitimate traffic elsewhere)."""
    rng = random.Random(seed)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    records = []
    for i, (x, y) in enumerate(synth.SEA(variant=0, seed=seed).take(n)):
        country = rng.choice(COUNTRIES)
        label = (not y) if country == broken else bool(y)
        p = model.predict_proba_one(x).get(True, 0.5)
        model.learn_one(x, y)  # it learns the majority's concept
        t = T0 + timedelta(seconds=i)
        records.append({
            "event_id": f"e{i}", "model": "fraud", "entity_id": "c", "event_time": t,
            "features": {**{f"x{k}": v for k, v in x.items()}, "country": country}, "label": label, "label_time": t,
            "predictions": [{"version": 1, "variant": "champion", "prediction": p >= 0.5,
                             "scores": {"True": p, "False": 1 - p}}],
        })
    return records


def test_a_problem_in_one_country_shows_in_its_segment_while_the_whole_hides_it() -> None:
    core = MonitorCore(data_drift=None, window_size=2000, segments=SegmentOptions(("country",), window_size=2000))
    stream = regional_stream(12_000)
    core.update(stream)
    [row] = core.status()
    whole = row.metrics["count"]["accuracy"]
    by_country = {s.value: s.metrics["accuracy"] for s in row.segments}
    print(f"accuracy: whole {whole:.3f}, per country {by_country}")
    assert set(by_country) == set(COUNTRIES)
    assert by_country["NL"] < 0.5  # the broken segment: the model is mostly wrong there
    assert min(v for c, v in by_country.items() if c != "NL") > 0.85
    assert whole > 0.7 and whole - by_country["NL"] > 0.3  # the whole stays passable: the segment tells


def test_segment_metrics_equal_rivers_over_the_segments_last_outcomes() -> None:
    window = 300
    core = MonitorCore(data_drift=None, window_size=window, segments=SegmentOptions(("country",), window_size=window))
    stream = regional_stream(4_000, seed=3)
    core.update(stream)
    [row] = core.status()
    for segment in row.segments:
        tail = [r for r in stream if r["features"]["country"] == segment.value][-window:]
        accuracy = metrics.Accuracy()
        for r in tail:
            made = r["predictions"][0]
            accuracy.update(r["label"], made["prediction"])
        assert abs(segment.metrics["accuracy"] - accuracy.get()) < 1e-12, segment.value
        assert segment.samples == sum(r["features"]["country"] == segment.value for r in stream)


def test_values_past_the_cap_share_one_segment_and_missing_values_have_theirs() -> None:
    core = MonitorCore(data_drift=None, segments=SegmentOptions(("shop",), max_values=3))
    records = regional_stream(500)
    for i, r in enumerate(records):
        r["features"] = {k: v for k, v in r["features"].items() if k != "country"}
        if i % 10:  # one in ten without the feature
            r["features"]["shop"] = f"shop-{i % 40}"  # 36 values
    core.update(records)
    [row] = core.status()
    values = {s.value: s.samples for s in row.segments}
    assert len(values) == 4 and OTHER in values and MISSING in values  # 2 shops + missing + other
    assert sum(values.values()) == 500


def test_segments_travel_in_metrics_events_and_old_readers_skip_them() -> None:
    core = MonitorCore(data_drift=None, segments=SegmentOptions(("country",)))
    core.update(regional_stream(1_000))
    events = core.metrics_events(T0 + timedelta(seconds=1_000))
    count = next(e for e in events if e["window_kind"] == "count")
    time = next(e for e in events if e["window_kind"] == "time")
    assert {s["value"] for s in count["segments"]} == set(COUNTRIES) and time["segments"] == []
    MetricsEvent.model_validate(count)
    codec = SingleObjectCodec()
    payload = codec.encode("MetricsEvent", count)
    assert codec.decode("MetricsEvent", payload)["segments"] == count["segments"]
    previous = json.loads(resources.files("riverops.schemas").joinpath("avro/previous/MetricsEvent.1.avsc").read_text())
    old = SingleObjectCodec(SchemaStore.bundled().with_reader(previous))
    decoded = old.decode("MetricsEvent", payload)
    assert "segments" not in decoded and decoded["metrics"] == count["metrics"]
    assert codec.decode("MetricsEvent", old.encode("MetricsEvent", decoded))["segments"] == []


def test_the_settings_turn_segments_on_and_the_gauges_follow() -> None:
    section = MonitorSettings(segment_by=("country",), segment_max_values=2, data_drift={"enabled": False})
    core = MonitorCore.from_settings(section)
    core.update(regional_stream(300))
    [row] = core.status()
    first_two = list(dict.fromkeys(r["features"]["country"] for r in regional_stream(300)))[:2]
    assert {s.value for s in row.segments} == {*first_two, OTHER}
    telemetry = Telemetry(CollectorRegistry(), role="monitor")
    telemetry.export_monitor(core.status())
    samples = {s.labels["value"]: s.value for m in telemetry.segment_samples.collect() for s in m.samples}
    assert sum(samples.values()) == 300 and len(samples) == 3
    auc = [s for m in telemetry.segment_metric.collect() for s in m.samples if s.labels["metric"] == "roc_auc"]
    assert len(auc) == 3
    core.forget({"fraud"})
    telemetry.export_monitor(core.status())
    assert not [s for m in telemetry.segment_metric.collect() for s in m.samples]
    assert MonitorCore.from_settings(MonitorSettings()).segments is None  # off by default
