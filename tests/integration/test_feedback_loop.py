"""Score, join and monitor on the real broker: exact metrics from out-of-order, duplicated
input, with the features as the generic map and as the model's typed record (the joiner
then writes the typed FeedbackEvent, which the monitor reads)."""

from __future__ import annotations

import bisect
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from river import metrics
from river.datasets import synth

from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.roles.scorer import ScorerStats, run_scorer
from riverops.schemas.features import feature_schema
from riverops.sections import DataDriftSettings, MonitorSettings
from riverops.settings import Settings

from .conftest import read_topic, writer_schemas

N = 3000


def _register(settings: Settings) -> None:
    registry = Registry()
    for stage, seed in (("champion", 1), ("shadow", 2)):
        model = get_spec("logreg").build(seed=seed)
        rows = [(x, bool(y)) for x, y in synth.Agrawal(classification_function=0, seed=seed).take(300)]
        learn_in_order(model, [x for x, _ in rows], [y for _, y in rows])
        records = register_trained(settings, registry, "fraud", model, spec_name="logreg", stage=stage,  # type: ignore[arg-type]
                                   by="test", reason=stage, seed=seed, samples=300)
        publish_records(settings, records)
        registry.apply_all(records)


@pytest.mark.parametrize("typed", [
    pytest.param(False, id="map", marks=pytest.mark.tansu),  # also in the Tansu smoke pass
    pytest.param(True, id="typed"),  # the typed path is the same on either broker: Kafka only
])
def test_out_of_order_duplicated_stream_gives_exact_metrics(
    loop_settings: Settings, start_worker: Any, typed: bool, tmp_path: Path
) -> None:
    settings = loop_settings
    if typed:  # fraud's features (Agrawal's nine) as a typed record, for every role
        folder = tmp_path / "features"
        folder.mkdir()
        names = next(iter(synth.Agrawal(seed=9).take(1)))[0]
        (folder / "fraud.avsc").write_text(json.dumps(feature_schema("fraud", dict.fromkeys(names, "double"))))
        settings = Settings(**{**settings.model_dump(), "feature_schemas": folder})
    _register(settings)
    rng = random.Random(3)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    stream = [(f"e{i}", x, bool(y)) for i, (x, y) in enumerate(synth.Agrawal(classification_function=0, seed=9).take(N))]
    labelled = {eid: y for eid, _, y in stream if rng.random() < 0.9}
    early = [eid for eid in labelled if rng.random() < 0.3]  # labels sent before their features

    with EventProducer(settings) as producer:
        for eid in early:
            producer.send_label(event_id=eid, model="fraud", label=labelled[eid], label_time=t0)
    scorer = start_worker(run_scorer, settings, ScorerStats())
    joiner = start_worker(run_joiner, settings, JoinerStats())
    monitoring = settings.model_copy(update={"monitor": MonitorSettings(
        emit_seconds=0.5, window_size=1_000_000, time_window=10**9, data_drift=DataDriftSettings(enabled=False))})
    monitor = start_worker(run_monitor, monitoring, MonitorStats())

    with EventProducer(settings) as producer:
        for i, (eid, x, _) in enumerate(stream):
            event = producer.send_features(event_id=eid, model="fraud", entity_id=f"c{i % 50}",
                                           features=x, event_time=t0 + timedelta(seconds=i))
            if rng.random() < 0.05:
                producer.send(event)  # a duplicated feature event
    late = [eid for eid in labelled if eid not in early]
    rng.shuffle(late)
    with EventProducer(settings) as producer:
        for eid in late + rng.sample(sorted(labelled), 200):  # out of order, 200 duplicates
            producer.send_label(event_id=eid, model="fraud", label=labelled[eid],
                                label_time=t0 + timedelta(seconds=N + 10))

    predictions = read_topic(settings, "predictions", "PredictionEvent", expected=2 * N, settle=2)
    deadline = time.monotonic() + 60
    while monitor.stats.feedback < len(labelled) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # let the monitor publish its status once more
    feedback = read_topic(settings, "feedback", "FeedbackEvent", expected=len(labelled))

    # the truth, computed directly from the events (duplicated predictions count once)
    champion = {p["event_id"]: p for p in predictions if p["variant"] == "champion"}
    accuracy = metrics.Accuracy()
    positives, negatives = [], []
    for eid, y in labelled.items():
        p = champion[eid]
        accuracy.update(y, p["prediction"])
        (positives if y else negatives).append(p["scores"]["True"])
    # ROC AUC by its definition, over every (positive, negative) pair
    negatives.sort()
    wins = sum(bisect.bisect_left(negatives, s) + 0.5 * (bisect.bisect_right(negatives, s)
               - bisect.bisect_left(negatives, s)) for s in positives)
    exact_auc = wins / (len(positives) * len(negatives))

    assert {f["event_id"] for f in feedback} == set(labelled)
    store = settings.codec().store
    features = store.writer_for("FeatureEvent", {"model": "fraud"})
    feedback_writer = store.feedback_of(features.fingerprint) if typed else store.reader("FeedbackEvent")
    assert feedback_writer is not None
    assert writer_schemas(settings, "feedback", len(labelled)) == {feedback_writer.fingerprint: len(labelled)}
    assert all(len(f["predictions"]) >= 2 for f in feedback)
    status = {(s.model, s.variant): s for s in monitor.stats.status}
    got = status[("fraud", "champion")]
    assert got.samples == len(labelled)
    assert status[("fraud", "shadow")].samples == len(labelled)
    assert got.metrics["count"]["accuracy"] == pytest.approx(accuracy.get(), abs=1e-12)
    assert got.metrics["count"]["roc_auc"] == pytest.approx(exact_auc, abs=1e-12)
    cores = joiner.stats.cores or {}
    assert sum(c.joined for c in cores.values()) == len(labelled)
    assert sum(c.duplicates + c.redelivered for c in cores.values()) >= 200
    assert scorer.stats.scored >= N
