"""A deliberately bad champion is rolled back by itself; the learner publishes snapshots."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from river.datasets import synth

from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records, read_registry
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.roles.learner import LearnerStats, run_learner
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.roles.retrainer import RetrainerStats, run_retrainer
from riverops.roles.scorer import ScorerStats, run_scorer
from riverops.sections import LearnerSettings, MonitorSettings
from riverops.settings import Settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _model(seed: int, *, invert: bool) -> Any:
    model = get_spec("logreg").build(seed=seed)
    rows = [(x, bool(y) != invert) for x, y in synth.SEA(variant=0, seed=seed).take(2000)]
    learn_in_order(model, [{str(k): v for k, v in x.items()} for x, _ in rows], [y for _, y in rows])
    return model


def _stream(settings: Settings, start: int, count: int) -> None:
    data = synth.SEA(variant=0, seed=start + 99).take(count)
    with EventProducer(settings) as producer:
        for i, (x, y) in enumerate(data, start=start):
            producer.send_features(event_id=f"r{i}", model="fraud", entity_id="c",
                                   features={str(k): v for k, v in x.items()},
                                   event_time=T0 + timedelta(seconds=i))
            producer.send_label(event_id=f"r{i}", model="fraud", label=bool(y),
                                label_time=T0 + timedelta(seconds=i + 5))


def test_bad_champion_is_rolled_back_and_the_learner_snapshots(
    loop_settings: Settings, start_worker: Any
) -> None:
    settings = loop_settings
    registry = Registry()
    for stage, model in (("champion", _model(1, invert=False)), ("candidate", _model(2, invert=True))):
        records = register_trained(settings, registry, "fraud", model, spec_name="logreg", stage=stage,  # type: ignore[arg-type]
                                   by="test", reason=f"{stage} for the rollback test", seed=1)
        publish_records(settings, records)
        registry.apply_all(records)
    start_worker(run_scorer, settings, ScorerStats())
    start_worker(run_joiner, settings, JoinerStats())
    start_worker(run_monitor, settings.model_copy(update={"monitor": MonitorSettings(emit_seconds=0.5)}),
                 MonitorStats())
    learner = start_worker(run_learner, settings.model_copy(update={"learner": LearnerSettings(
        every_samples=1000, every_seconds=3600)}), LearnerStats())
    retrainer = start_worker(run_retrainer, settings, RetrainerStats())

    _stream(settings, 0, 2500)
    time.sleep(4)  # the good champion's live metric reaches the retrainer
    bad = registry.promote("fraud", 2, by="test", reason="deliberately bad model")
    publish_records(settings, bad)
    _stream(settings, 2500, 4000)

    deadline = time.monotonic() + 90
    champion = None
    while time.monotonic() < deadline:
        champion = read_registry(settings).champion("fraud")
        if retrainer.stats.rollbacks and champion is not None and champion.version == 1:
            break
        time.sleep(1)
    assert retrainer.stats.rollbacks == 1, retrainer.stats
    assert champion is not None and champion.version == 1
    final = read_registry(settings)
    assert final.get("fraud", 2).stage == "rejected"
    assert "rolled back" in final.get("fraud", 2).reason
    snapshots = [v for v in final.versions("fraud") if v.changed_by == "learner"]
    assert learner.stats.snapshots >= 1 and snapshots
    lineage = snapshots[0].lineage
    assert lineage.parent in (1, 2) and lineage.samples >= 1000 and lineage.training_data
