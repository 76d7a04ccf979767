"""OnlineRole without Kafka: records released in time order, refusals dead-lettered through
the runtime with their origin, offsets committed only when the merge is drained, the
progressive metrics exported as a gauge.

The context and the messages are stand-ins with only what the role reads of them; the
Kafka path is tests/integration/test_online_equivalence.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, TopicPartition
from prometheus_client import CollectorRegistry
from river import datasets

from riverops.kafka.deadletter import Origin, dead_letter
from riverops.modelops import register_trained
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.online import OnlineRole, OnlineStats
from riverops.runtime import Input, Outputs
from riverops.schemas.errors import InvalidEventError
from riverops.sections import OnlineSettings
from riverops.settings import Settings
from riverops.telemetry import Telemetry

PHISHING = list(datasets.Phishing())[:3]
FEATURES, LABELS = "riverops.features", "riverops.labels"


class _Context:
    """The part of riverops.runtime.Context the online role uses."""

    def __init__(self, registry: Registry, telemetry: Telemetry) -> None:
        self.registry, self.telemetry = registry, telemetry


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(signing_key="k" * 32, artifact_dir=tmp_path / "artifacts",
                    online=OnlineSettings(idle_seconds=5.0))


def _role(settings: Settings) -> tuple[OnlineRole, CollectorRegistry]:
    registry = Registry()
    registry.apply_all(register_trained(settings, registry, "phish", get_spec("logreg").build(seed=1),
                                        spec_name="logreg", stage="champion", by="test", reason="r"))
    metrics = CollectorRegistry()
    role = OnlineRole(settings, stats=OnlineStats())
    role.start(_Context(registry, Telemetry(metrics, role="online")))  # type: ignore[arg-type]
    role.assign([TopicPartition(FEATURES, 0), TopicPartition(LABELS, 0)], {})
    return role, metrics


def _features(i: int, x: dict[str, Any], at: int) -> Input:
    record = {"event_id": f"p{i}", "model": "phish", "entity_id": "site", "event_time": at, "features": x}
    return Input("features", Message(topic=FEATURES, partition=0, offset=i, timestamp=(1, at)), record)


def _label(i: int, y: Any, at: int, offset: int) -> Input:
    record = {"event_id": f"p{i}", "model": "phish", "label": y, "label_time": at}
    return Input("labels", Message(topic=LABELS, partition=0, offset=offset, timestamp=(1, at)), record)


def test_released_records_predict_learn_and_reject_through_the_runtime(settings: Settings) -> None:
    role, metrics = _role(settings)
    (x0, y0), (x1, y1), (x2, _) = PHISHING
    nan = {**x1, next(iter(x1)): math.nan}
    role.handle([_features(0, x0, 1000), _features(1, nan, 2000), _features(2, x2, 3000)], Outputs())
    role.handle([_label(0, y0, 1500, 0), _label(1, y1, 2500, 1)], Outputs())
    out = Outputs()
    role.tick(role._last_input, out)  # below the watermark (2500): p0, its label, p1
    assert [p["event_id"] for p in out.records["predictions"]] == ["p0"]
    assert out.headers["predictions"](out.records["predictions"][0]) == [("riverops-predictions", b"1")]
    [(source, error)] = out.rejected
    assert isinstance(source, Origin) and isinstance(error, InvalidEventError) and "nan" in str(error)
    letter = dead_letter(source, error, processor="online")
    assert (letter["source_topic"], letter["source_offset"], letter["key"]) == (FEATURES, 1, b"p1")
    idle = Outputs()
    role.tick(role._last_input + 5.0, idle)  # drained: p1's label (its features were refused), p2
    assert [p["event_id"] for p in idle.records["predictions"]] == ["p2"]
    [(source, error)] = idle.rejected
    assert (source.topic(), source.offset()) == (LABELS, 1) and "unknown" in str(error)
    assert (role.stats.predictions, role.stats.learned, role.stats.rejected) == (2, 1, 2)
    core_metrics = role.stats.cores["phish"].metrics()
    for name, value in core_metrics.items():
        assert metrics.get_sample_value(
            "riverops_online_metric", {"role": "online", "model": "phish", "metric": name}) == value
    assert set(core_metrics) == {"accuracy", "roc_auc"}


def test_offsets_wait_for_the_merge_to_drain(settings: Settings) -> None:
    role, _ = _role(settings)
    (x0, y0), (x1, _), _ = PHISHING
    role.handle([_features(0, x0, 1000), _features(1, x1, 2000)], Outputs())
    role.handle([_label(0, y0, 1500, 0)], Outputs())
    role.tick(role._last_input, Outputs())  # p0 out; its label and p1 wait for later labels
    consumed = {(FEATURES, 0): 2, (LABELS, 0): 1}
    assert role.merge.pending == 2 and role.offsets(consumed) == {}
    idle = Outputs()
    role.tick(role._last_input + 5.0, idle)  # idle_seconds without input: drained
    assert [p["event_id"] for p in idle.records["predictions"]] == ["p1"]
    assert role.stats.learned == 1 and role.offsets(consumed) == consumed
    role.handle([_features(2, x0, 3000)], Outputs())
    assert role.offsets({(FEATURES, 0): 3, (LABELS, 0): 1}) == consumed  # the last drained ones
    role.revoke([TopicPartition(LABELS, 0)])
    assert role.merge.partitions == [(FEATURES, 0)]
    assert role.offsets({(FEATURES, 0): 3}) == {(FEATURES, 0): 2}
