"""The learner role: learns incrementally from feedback and publishes snapshots as versions.

One learner per model name starts from a copy of the current champion and learns from
the feedback stream in order (:class:`~riverops.roles.learner.core.LearnerCore`); every
``settings.learner.every_samples`` labelled events or ``every_seconds``
(``RIVEROPS_LEARNER__EVERY_SAMPLES``, ``RIVEROPS_LEARNER__EVERY_SECONDS``) it publishes a
snapshot as a new *candidate* version with its lineage (parent, feedback offset ranges,
samples, progressive metrics). Candidates are served only when promoted (by hand, or as a
challenger or shadow). Feedback the learner refuses (a NaN feature, a label that does not
suit the task, an unknown model) is dead-lettered, never learned.

A snapshot is also the learner's checkpoint: offsets are committed only up to the last
snapshot (when one model is due, every model with new samples is snapshotted, so
everything read by then is in a published version), and the snapshots' versions are
written to ``RIVEROPS_STATE_DIR/learner/GROUP.json``. After a crash the learner resumes
from that snapshot (when it still descends from the current champion; else from the
champion) and re-learns the feedback after it, so no labelled event is lost or learned
twice by the model that goes on (records the group reads again that the snapshot holds,
after a kill between its publication and the commit of its offsets, are skipped by the
snapshot's offset ranges); the price is that the group's committed offsets trail by
up to one snapshot period, which the lag view shows, and that dead letters of that tail
repeat.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from riverops.modelops import model_loader, register_trained
from riverops.models.registry import Registry
from riverops.roles.learner.core import LearnerCore, Snapshot, Start
from riverops.runtime import Context, Input, Offsets, Outputs, RoleSpec, run
from riverops.schemas.errors import InvalidEventError, RegistryError
from riverops.schemas.events import ModelVersion, OffsetRange
from riverops.settings import Settings
from riverops.statefile import read_json, write_json
from riverops.telemetry import Telemetry

__all__ = ["LearnerStats", "LearnerRole", "run_learner"]

log = logging.getLogger(__name__)


@dataclass
class LearnerStats:
    """Counts of the learner, for tests, the status view and logs."""

    learned: int = 0
    duplicates: int = 0
    rejected: int = 0  # refused by the core (the runtime's decode failures are not counted)
    snapshots: int = 0
    dead_letters: int = 0  # every dead letter, decode failures included (kept by the runtime)
    assigned: bool = False


def _resumable(registry: Registry, model: str, saved: int | list[int] | None,
               champion: int) -> ModelVersion | None:
    """The learner snapshot ``saved`` names if it still descends from ``champion``; None
    otherwise. ``saved`` is [version, the champion the learner started from] (the resume
    file), or a version alone (files written before 2026-12-03: its parents must lead to
    the champion, and a worker's registry forgets old candidates)."""
    version, root = (saved, None) if not isinstance(saved, list) else saved
    try:
        record = registry.get(model, version) if version is not None else None
    except RegistryError:
        return None
    if record is not None and not registry.held(model, record.version):
        log.warning("%s: learner snapshot v%s is no longer held (only its metadata): "
                    "learning again from the champion", model, record.version)
        return None
    if root is not None:
        return record if root == champion else None
    step: ModelVersion | None = record
    while step is not None and step.lineage.parent is not None:
        if step.lineage.parent == champion:
            return record
        try:
            step = registry.get(model, step.lineage.parent)
        except RegistryError:
            return None
    return None


class LearnerRole(RoleSpec):
    """Feedback in, candidate versions out (registry records, published at snapshot time);
    commits only what the published snapshots hold."""

    name = "learner"
    inputs = ("feedback",)
    follows_registry = True
    latency_stage = "learn"

    def __init__(self, settings: Settings, *, group_id: str,
                 stats: LearnerStats | None = None) -> None:
        self.stats: LearnerStats = stats or LearnerStats()
        knobs = settings.learner
        self.core = LearnerCore(self._start_model, every_samples=knobs.every_samples,
                                every_seconds=knobs.every_seconds, dedupe_size=knobs.dedupe_size)
        self._load = model_loader(settings)
        self._resume_file = settings.state_dir / "learner" / f"{group_id}.json"
        self._resume: dict[str, list[int]] = {}  # model -> [its last snapshot, the champion it started from]
        self._roots: dict[str, int] = {}  # model -> the champion its learning started from
        self._handled: Offsets = {}  # next offset of every partition, over the records handled
        self._covered: Offsets = {}  # _handled as of the last snapshot
        self._since: set[tuple[str, int]] = set()  # partitions handled since the last snapshot
        self._resumed_from: dict[str, ModelVersion | None] = {}  # model -> its start, once decided
        self._learned_to: dict[str, Offsets] = {}
        """Per model: how far the snapshot it resumed from learned each partition."""

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        self._resume = read_json(self._resume_file) or {}

    def _resumed(self, model: str) -> ModelVersion | None:
        """The snapshot ``model`` resumes from (None: from its champion), decided once, when
        its first record arrives; how far that snapshot learned is noted down."""
        if model not in self._resumed_from:
            champion = self.ctx.registry.champion(model)
            saved = None if champion is None else _resumable(
                self.ctx.registry, model, self._resume.get(model), champion.version)
            self._resumed_from[model] = saved
            self._learned_to[model] = {} if saved is None else {
                (r.topic, r.partition): r.end for r in saved.lineage.training_data}
        return self._resumed_from[model]

    def _start_model(self, model: str) -> Start:
        """The model to learn ``model`` with: the resumable snapshot, else the champion."""
        registry = self.ctx.registry
        champion = registry.champion(model)
        if champion is None:
            raise InvalidEventError(f"unknown model {model!r}: no champion to learn from")
        saved = self._resumed(model)
        self._roots[model] = champion.version  # a resumable snapshot descends from it
        if saved is not None:
            log.info("%s: resuming from learner snapshot v%s", model, saved.version)
            return Start(copy.deepcopy(self._load(saved)), saved.spec, saved.version, saved.task,
                         saved.lineage.samples)
        return Start(copy.deepcopy(self._load(champion)), champion.spec, champion.version,
                     champion.task)

    def handle(self, batch: list[Input], out: Outputs) -> None:
        learning = self._not_yet_learned(batch)
        self._learn(learning, out)
        for topic, partition, offset in (item.source for item in batch):
            key = (topic, partition)
            self._handled[key] = max(self._handled.get(key, 0), offset + 1)
            self._since.add(key)

    def _not_yet_learned(self, batch: list[Input]) -> list[Input]:
        """``batch`` without the records its model's resumed snapshot learned already: a
        learner killed after publishing a snapshot but before committing the offsets it
        covers reads them again from the older committed offsets."""
        for model in {item.value.get("model") for item in batch} - set(self._resumed_from):
            if isinstance(model, str) and self.ctx.registry.champion(model) is not None:
                self._resumed(model)
        kept = [item for item in batch
                if item.source[2] >= self._learned_to.get(item.value.get("model"), {}).get(item.source[:2], 0)]
        self.stats.duplicates += len(batch) - len(kept)
        return kept

    def _learn(self, batch: list[Input], out: Outputs) -> None:
        sources = [item.source for item in batch]
        result = self.core.update([item.value for item in batch], sources=sources)
        messages = {source: item.message for source, item in zip(sources, batch, strict=True)}
        for rejected in result.rejected:
            assert rejected.source is not None  # every record was given its source
            out.reject(messages[rejected.source], rejected.error)
        self.stats.learned += result.learned
        self.stats.duplicates += result.duplicates
        self.stats.rejected += len(result.rejected)

    def tick(self, now: float, out: Outputs) -> None:
        """Publish the due snapshots; when one model is due, every model with new samples
        is snapshotted, so that everything handled so far is in a published version."""
        if not self.core.due(now):
            return
        for status in self.core.status():
            if status.samples:
                self._publish(self.core.snapshot(status.model, now_seconds=now))
        write_json(self._resume_file, self._resume)
        self._covered.update(self._handled)
        self._since.clear()

    def _publish(self, snap: Snapshot) -> None:
        records = self.ctx.publish_change(lambda registry: register_trained(
            self.ctx.settings, registry, snap.model, snap.estimator, spec_name=snap.spec,
            stage="candidate", by="learner",
            reason=f"online learning snapshot after {snap.total_samples} samples",
            metrics=snap.metrics, samples=snap.total_samples, parent=snap.parent,
            training_data=[OffsetRange(**d) for d in snap.training_data],
        ))
        self._resume[snap.model] = [records[-1].version, self._roots[snap.model]]
        self.stats.snapshots += 1
        if self.ctx.telemetry is not None:
            self.ctx.telemetry.count_version(snap.model)
        log.info("%s snapshot published as v%s", snap.model, records[-1].version)

    def state_sizes(self) -> Mapping[str, int]:
        return self.core.sizes()

    def offsets(self, consumed: Offsets) -> Offsets:
        """The consumed offsets as of the last snapshot: a partition with records handled
        since then commits only what that snapshot holds (nothing before the first one);
        one without commits all it consumed (what lies beyond the last snapshot there was
        dead-lettered by the runtime, and the dead letters were delivered)."""
        return {
            key: self._covered[key] if key in self._since else end
            for key, end in consumed.items()
            if key not in self._since or key in self._covered
        }

    def revoke(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._handled.pop(key, None)
            self._covered.pop(key, None)
            self._since.discard(key)


def run_learner(settings: Settings, *, stop: threading.Event, group_id: str = "riverops-learner",
                stats: LearnerStats | None = None, telemetry: Telemetry | None = None) -> LearnerStats:
    """Learn from feedback until ``stop`` is set; the knobs are ``settings.learner``'s."""
    role = LearnerRole(settings, group_id=group_id, stats=stats)
    run(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    return role.stats
