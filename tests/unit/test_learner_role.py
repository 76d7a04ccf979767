"""LearnerRole without Kafka: refused feedback goes to the dead letters, snapshots are
published as candidates, offsets are committed only as far as the last snapshot, and a new
learner of the same group resumes from the snapshot it wrote down.

The context and the messages are stand-ins with only what the role reads of them (the
runtime's registry lock and publishing, a message's topic, partition and offset); the
Kafka path is tests/integration/test_rollback.py and test_worker_crashes.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from river import datasets

from riverops.modelops import register_trained
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.learner import LearnerRole, LearnerStats
from riverops.runtime import Input, Outputs
from riverops.schemas.errors import RegistryError
from riverops.schemas.events import ModelVersion
from riverops.sections import LearnerSettings
from riverops.settings import Settings

PHISHING = list(datasets.Phishing())[:300]
TOPIC = "riverops.feedback"


class _Context:
    """The part of riverops.runtime.Context the learner uses."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings, self.registry, self.telemetry = settings, registry, None
        self.published: list[ModelVersion] = []

    def publish_change(self, build: Callable[[Registry], list[ModelVersion]]) -> list[ModelVersion]:
        records = build(self.registry)
        self.published.extend(records)
        self.registry.apply_all(records)
        return records


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(signing_key="k" * 32, artifact_dir=tmp_path / "artifacts",
                    state_dir=tmp_path / "state",
                    learner=LearnerSettings(every_samples=100, every_seconds=3600.0))


@pytest.fixture
def registry(settings: Settings) -> Registry:
    registry = Registry()
    registry.apply_all(register_trained(settings, registry, "fraud", get_spec("logreg").build(),
                                        spec_name="logreg", stage="champion", by="test",
                                        reason="the champion"))
    return registry


def _batch(rows: list[tuple[dict[str, Any], Any]], *, partition: int, start: int) -> list[Input]:
    return [Input("feedback", Message(topic=TOPIC, partition=partition, offset=start + i),
                  {"event_id": f"e{partition}-{start + i}", "model": "fraud", "features": x,
                   "label": y})
            for i, (x, y) in enumerate(rows)]


def _role(settings: Settings, registry: Registry) -> tuple[LearnerRole, _Context]:
    role, ctx = LearnerRole(settings, group_id="g", stats=LearnerStats()), _Context(settings, registry)
    role.start(ctx)  # type: ignore[arg-type]
    return role, ctx


def test_a_nan_feature_is_dead_lettered_with_its_message(settings: Settings, registry: Registry) -> None:
    role, _ = _role(settings, registry)
    batch = _batch(PHISHING[:10], partition=0, start=0)
    nan = Input("feedback", batch[3].message, {**batch[3].value,
                "features": {**batch[3].value["features"], "age_of_domain": math.nan}})
    out = Outputs()
    role.handle([*batch[:3], nan, *batch[4:]], out)
    assert [(source, type(error).__name__) for source, error in out.rejected] == [
        (nan.message, "InvalidEventError")]
    assert (role.stats.learned, role.stats.rejected) == (9, 1)


def test_offsets_are_committed_only_as_far_as_the_last_snapshot(
        settings: Settings, registry: Registry) -> None:
    role, ctx = _role(settings, registry)
    role.handle(_batch(PHISHING[:60], partition=0, start=0), Outputs())
    role.handle(_batch(PHISHING[60:90], partition=1, start=500), Outputs())
    consumed = {(TOPIC, 0): 60, (TOPIC, 1): 530, (TOPIC, 2): 7}  # partition 2: dead letters only
    role.tick(1.0, Outputs())
    assert ctx.published == [] and role.offsets(consumed) == {(TOPIC, 2): 7}

    role.handle(_batch(PHISHING[90:130], partition=0, start=60), Outputs())
    role.tick(2.0, Outputs())  # 130 samples: due, and every partition read so far is in it
    snapshot = [r for r in ctx.published if r.stage == "candidate"]
    assert len(snapshot) == 1 and snapshot[0].lineage.samples == 130
    assert snapshot[0].lineage.parent == registry.champion("fraud").version  # type: ignore[union-attr]
    consumed[(TOPIC, 0)] = 100
    assert role.offsets(consumed) == consumed

    role.handle(_batch(PHISHING[130:150], partition=1, start=530), Outputs())
    consumed[(TOPIC, 1)] = 550
    role.tick(3.0, Outputs())  # 20 samples: not due
    assert role.offsets(consumed) == {(TOPIC, 0): 100, (TOPIC, 1): 530, (TOPIC, 2): 7}
    assert role.stats.snapshots == 1


def test_a_new_learner_of_the_group_resumes_from_its_snapshot(
        settings: Settings, registry: Registry) -> None:
    role, ctx = _role(settings, registry)
    role.handle(_batch(PHISHING[:100], partition=0, start=0), Outputs())
    role.tick(1.0, Outputs())
    version = ctx.published[-1].version
    again, _ = _role(settings, registry)
    again.handle(_batch(PHISHING[100:110], partition=0, start=100), Outputs())
    status = again.core.status()[0]
    assert (status.parent, status.total_samples) == (version, 110)


def test_a_learner_resumes_although_its_worker_forgot_the_snapshots_between(settings: Settings) -> None:
    """Each restart resumes from the last snapshot, whose parent is the snapshot before: a
    chain back to the champion. A worker's registry keeps a writer's newest candidates
    only, so after a few restarts the chain is gone from it; the resume file's note of the
    champion the learning started from is what says the last snapshot descends from it."""
    registry = Registry(keep_artifacts=1)
    registry.apply_all(register_trained(settings, registry, "fraud", get_spec("logreg").build(),
                                        spec_name="logreg", stage="champion", by="test",
                                        reason="the champion"))
    parents = []
    for restart in range(12):
        role, ctx = _role(settings, registry)
        role.handle(_batch(PHISHING[:100], partition=0, start=100 * restart), Outputs())
        parents.append(role.core.status()[0].parent)
        role.tick(1.0, Outputs())
    assert parents == [1, *range(2, 13)]  # each learner resumed from the one before
    with pytest.raises(RegistryError, match="no longer kept"):
        registry.get("fraud", 3)  # a link of the chain, forgotten
    assert registry.sizes()[0] < 12


def test_a_learner_killed_before_its_commit_does_not_learn_its_snapshot_twice(
        settings: Settings, registry: Registry) -> None:
    """Killed after publishing a snapshot (and noting it down) but before committing the
    offsets it covers: the next learner resumes from that snapshot and reads the records
    from the older committed offset again; those the snapshot holds are not learned again."""
    role, ctx = _role(settings, registry)
    role.handle(_batch(PHISHING[:100], partition=0, start=0), Outputs())
    role.tick(1.0, Outputs())
    snapshot = ctx.published[-1]
    assert [(r.partition, r.end) for r in snapshot.lineage.training_data] == [(0, 100)]
    again, _ = _role(settings, registry)  # the group had committed offset 60 only
    again.handle(_batch(PHISHING[60:130], partition=0, start=60), Outputs())
    status = again.core.status()[0]
    assert (status.parent, status.total_samples) == (snapshot.version, 130)
    assert (again.stats.learned, again.stats.duplicates) == (30, 40)
    assert again.offsets({(TOPIC, 0): 130}) == {}  # nothing snapshotted yet by this learner
