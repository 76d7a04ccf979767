"""The online variant over Kafka equals River's progressive_val_score, with delayed labels."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from river import datasets, evaluate, metrics

from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records
from riverops.modelops import register_trained
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.online import OnlineStats, run_online
from riverops.settings import Settings


@pytest.mark.parametrize("delay", [0, 10])
def test_online_variant_over_kafka_equals_progressive_val_score(
    loop_settings: Settings, start_worker: object, delay: int
) -> None:
    settings = loop_settings
    registry = Registry()
    fresh = get_spec("logreg").build(seed=1)
    records = register_trained(settings, registry, "phish", fresh, spec_name="logreg",
                               stage="champion", by="test", reason="fresh model", seed=1)
    publish_records(settings, records)
    data = list(datasets.Phishing())
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    running = start_worker(run_online, settings, OnlineStats())  # type: ignore[operator]
    with EventProducer(settings) as producer:
        for i, (x, _y) in enumerate(data):
            producer.send_features(event_id=f"p{i}", model="phish", entity_id="site", features=x,
                                   event_time=t0 + timedelta(seconds=i))
            j = i - delay  # the label of sample j is revealed when sample i = j + delay arrives
            if j >= 0:
                producer.send_label(event_id=f"p{j}", model="phish", label=data[j][1],
                                    label_time=t0 + timedelta(seconds=i))
        for j in range(max(len(data) - delay, 0), len(data)):
            producer.send_label(event_id=f"p{j}", model="phish", label=data[j][1],
                                label_time=t0 + timedelta(seconds=len(data) + j))
    deadline = time.monotonic() + 60
    stats: OnlineStats = running.stats  # type: ignore[attr-defined]
    while stats.learned < len(data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stats.learned == len(data) and stats.rejected == 0
    online = stats.cores["phish"].metrics()
    kwargs = {"delay": delay} if delay else {}
    accuracy = evaluate.progressive_val_score(datasets.Phishing(), get_spec("logreg").build(seed=1),
                                              metrics.Accuracy(), **kwargs)
    roc_auc = evaluate.progressive_val_score(datasets.Phishing(), get_spec("logreg").build(seed=1),
                                             metrics.ROCAUC(), **kwargs)
    assert online["accuracy"] == pytest.approx(accuracy.get(), abs=1e-9)
    assert online["roc_auc"] == pytest.approx(roc_auc.get(), abs=1e-9)
    if delay == 0:
        assert round(online["accuracy"], 4) == 0.8928 and round(online["roc_auc"], 4) == 0.9507
