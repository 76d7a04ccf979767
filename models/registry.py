"""The model registry: the fold of the registry topic's ModelVersion records.

Every change (a new version, a promotion, a rollback, an archive) is a record keyed
``model:version``; the last record of each key wins, as after compaction. Aliases are
stages: one champion per model, any number of challengers (with a traffic share) and
shadows. Each record carries the champion terms its version held (``reigns``), so the
order in which versions became champion, which a rollback needs, survives compaction. Operations here only *build* the records of a change; the
caller publishes them, and every process that folds the topic sees the same registry.

Examples
--------
>>> from riverops.schemas.events import Artifact
>>> art = Artifact(inline=b"x", sha256="0" * 64, signature="0" * 64, size=1)
>>> reg = Registry()
>>> for r in reg.new_version("fraud", spec="logreg", task="binary", artifact=art,
...                          stage="champion", changed_by="me", reason="first"):
...     reg.apply(r)
>>> reg.champion("fraud").version
1
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from riverops.models.shared import SharedArtifacts
from riverops.schemas.errors import RegistryError
from riverops.schemas.events import Artifact, Lineage, ModelVersion, Stage, Task

__all__ = ["Registry", "ModelState", "ServingPlan"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ModelState:
    """Everything the registry knows about one model name."""

    versions: dict[int, ModelVersion] = field(default_factory=dict)
    terms: dict[int, list[int]] = field(default_factory=dict)  # version -> champion terms held
    inline: set[int] = field(default_factory=set)  # versions whose record holds its artifact bytes
    top: int = 0  # the highest version number folded, a forgotten one included
    forgotten: int = 0  # versions a bounded registry no longer keeps (see Registry._release)
    next_pass: int = 0  # a bounded registry's next release pass, at this many versions
    _forgotten_term: int = 0  # the last term of the forgotten versions

    @property
    def champion_history(self) -> list[int]:
        """Versions in the order they last became champion (the forgotten ones left out)."""
        return sorted(self.terms, key=lambda v: max(self.terms[v]))

    @property
    def last_term(self) -> int:
        return max((max(t) for t in self.terms.values()), default=self._forgotten_term)

    def forget(self, version: int) -> None:
        """Drop everything kept about ``version`` but that its number and terms were taken."""
        terms = self.terms.pop(version, None)
        if terms:
            self._forgotten_term = max(self._forgotten_term, *terms)
        del self.versions[version]
        self.inline.discard(version)
        self.forgotten += 1


@dataclass(frozen=True)
class ServingPlan:
    """What a scorer serves for one model: champion, challengers with shares, shadows."""

    champion: ModelVersion | None
    challengers: tuple[ModelVersion, ...]
    shadows: tuple[ModelVersion, ...]

    @property
    def versions(self) -> tuple[ModelVersion, ...]:
        lead = (self.champion,) if self.champion else ()
        return (*lead, *self.challengers, *self.shadows)


SERVED: frozenset[Stage] = frozenset({"champion", "challenger", "shadow"})


class Registry:
    """The registry state: fold ModelVersion records in topic order with :meth:`apply`.

    ``keep_artifacts=None`` keeps every version, artifact bytes included (the CLI, tests).
    A worker's registry is given a number N: it keeps the versions served, the last N
    candidates of each writer and the last N + 1 champions of each model (what the roles
    load: a learner's own snapshot, a rollback's target), with their bytes (:meth:`held`),
    and the newest version's metadata; it forgets the others, metadata included, so it
    stays bounded however long it runs and however many versions are published. Version
    numbers never go back (the highest one folded is kept). Changes that would publish a
    version it holds no bytes of, or one it forgot, raise RegistryError.
    """

    def __init__(self, *, keep_artifacts: int | None = None, shared: SharedArtifacts | None = None) -> None:
        self._models: dict[str, ModelState] = {}
        self.records_applied = 0
        self.keep_artifacts = keep_artifacts
        self._shared = shared
        self._held: Counter[str] = Counter()  # sha256 -> versions holding those bytes (shared only)
        if shared is not None:
            shared.join(self, functools.partial(frozenset, self._held))

    # --- the fold -------------------------------------------------------------------
    def apply(self, record: ModelVersion) -> None:
        """Fold one record (the last record of a key wins)."""
        state = self._models.setdefault(record.model, ModelState())
        previous = state.versions.get(record.version)
        if self._shared is not None:
            record = self._share(record, previous if record.version in state.inline else None)
        state.versions[record.version] = record
        if record.reigns:  # the terms travel with every record, so compaction keeps them
            state.terms[record.version] = list(record.reigns)
        elif record.stage == "champion" and (previous is None or previous.stage != "champion"):
            # written before records carried their terms: count the term as the fold meets it
            state.terms[record.version] = [*state.terms.get(record.version, []), state.last_term + 1]
        self.records_applied += 1
        state.top = max(state.top, record.version)
        if record.artifact.inline is None:
            state.inline.discard(record.version)
        else:
            state.inline.add(record.version)
        # released in passes, once twice the bound is inline or the versions doubled since
        # the last pass: a fold from the start of the topic stays linear in its records
        if self.keep_artifacts is not None and (len(state.inline) > 2 * (self.keep_artifacts + 2)
                                                or len(state.versions) >= state.next_pass):
            self._release(state)

    def _release(self, state: ModelState) -> None:
        """Keep what :meth:`held` keeps (the served versions, each writer's newest
        candidates, the last former champions) and the newest version; forget the rest:
        its metadata too, so a long-running worker's registry does not grow with the
        versions published (the topic and ``riverops models`` still have them)."""
        assert self.keep_artifacts is not None
        keep = self.keep_artifacts
        newest_first = sorted(state.versions, reverse=True)
        kept = {v for v in newest_first if state.versions[v].stage in SERVED}
        newest: dict[str, int] = {}  # writer -> its candidates kept so far
        for version in newest_first:
            record = state.versions[version]
            if record.stage == "candidate" and newest.get(record.changed_by, 0) < keep:
                newest[record.changed_by] = newest.get(record.changed_by, 0) + 1
                kept.add(version)
        kept.update(state.champion_history[-keep - 1:])
        for version in state.inline - kept:
            self._unshare(state.versions[version])
        for version in set(state.versions) - kept - {state.top}:
            state.forget(version)
        for version in state.inline - kept:  # the newest version, when nothing else keeps it
            record = state.versions[version]
            state.versions[version] = record.model_copy(
                update={"artifact": record.artifact.model_copy(update={"inline": None})})
        state.inline &= kept
        state.next_pass = 2 * len(state.versions) + 8
        if self._shared is not None:
            self._shared.prune()

    def _share(self, record: ModelVersion, previous: ModelVersion | None) -> ModelVersion:
        """``record`` holding the process's copy of its artifact bytes, counted as held."""
        if previous is not None:
            self._unshare(previous)
        artifact = record.artifact
        if artifact.inline is None:
            return record
        assert self._shared is not None
        self._held[artifact.sha256] += 1
        interned = self._shared.intern(artifact.sha256, artifact.inline)
        if interned is artifact.inline:
            return record
        return record.model_copy(update={"artifact": artifact.model_copy(update={"inline": interned})})

    def _unshare(self, record: ModelVersion) -> None:
        sha = record.artifact.sha256
        if self._shared is None or record.artifact.inline is None or not self._held[sha]:
            return
        self._held[sha] -= 1
        if not self._held[sha]:
            del self._held[sha]

    def __deepcopy__(self, memo: dict[int, Any]) -> Registry:
        """A scratch copy (a change tried on it before it is published): it shares no
        artifact bytes with the process, so nothing it folds or releases touches theirs."""
        clone = Registry.__new__(Registry)
        memo[id(self)] = clone
        for name, value in vars(self).items():
            setattr(clone, name, None if name == "_shared" else copy.deepcopy(value, memo))
        clone._held = Counter()
        return clone

    def sizes(self) -> tuple[int, int]:
        """(versions kept, versions whose artifact bytes are held), over every model."""
        return (sum(len(s.versions) for s in self._models.values()),
                sum(len(s.inline) for s in self._models.values()))

    def held(self, model: str, version: int) -> bool:
        """Whether this registry can give the model of ``model:version`` (its bytes inline,
        or a uri of the artifact store); False for one whose bytes it released or that it
        forgot; RegistryError for a version never folded."""
        state = self._models.get(model)
        if state is not None and version <= state.top and version not in state.versions:
            return False
        artifact = self.get(model, version).artifact
        return artifact.inline is not None or artifact.uri is not None

    def apply_all(self, records: Iterable[ModelVersion]) -> Registry:
        for record in records:
            self.apply(record)
        return self

    # --- queries --------------------------------------------------------------------
    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self._models))

    def versions(self, model: str) -> tuple[ModelVersion, ...]:
        state = self._models.get(model)
        return tuple(state.versions[v] for v in sorted(state.versions)) if state else ()

    def get(self, model: str, version: int) -> ModelVersion:
        state = self._models.get(model)
        if state is None or version not in state.versions:
            if state is not None and version <= state.top:
                raise RegistryError(f"{model}:{version} is no longer kept by this process (not served, "
                                    "nor among the newest candidates or former champions); "
                                    "`riverops models` reads the whole topic")
            raise RegistryError(f"unknown model version {model}:{version}")
        return state.versions[version]

    def champion(self, model: str) -> ModelVersion | None:
        """The current champion: the latest version to become champion that still is."""
        state = self._models.get(model)
        if state is None:
            return None
        for version in reversed(state.champion_history):
            if state.versions[version].stage == "champion":
                return state.versions[version]
        return None  # (a forgotten version's terms are forgotten with it)

    def times_champion(self, model: str, version: int) -> int:
        """How many times ``model:version`` became champion (a rollback restores one: 2)."""
        state = self._models.get(model)
        return len(state.terms.get(version, [])) if state else 0

    def previous_champion(self, model: str) -> ModelVersion | None:
        """The champion before the current one that is still usable (not rejected)."""
        state = self._models.get(model)
        current = self.champion(model)
        if state is None or current is None:
            return None
        for version in reversed(state.champion_history):
            record = state.versions[version]
            if version != current.version and record.stage not in ("rejected", "champion"):
                return record
        return None

    def with_stage(self, model: str, stage: Stage) -> tuple[ModelVersion, ...]:
        return tuple(v for v in self.versions(model) if v.stage == stage)

    def plan(self, model: str) -> ServingPlan:
        champion = self.champion(model)
        challengers = tuple(
            v for v in self.with_stage(model, "challenger") if v.share and v.share > 0
        )
        return ServingPlan(champion, challengers, self.with_stage(model, "shadow"))

    def aliases(self) -> dict[str, dict[str, list[int]]]:
        """model -> alias (champion, challenger, shadow) -> versions."""
        out: dict[str, dict[str, list[int]]] = {}
        for model in self.models:
            plan = self.plan(model)
            out[model] = {
                "champion": [plan.champion.version] if plan.champion else [],
                "challenger": [v.version for v in self.with_stage(model, "challenger")],
                "shadow": [v.version for v in plan.shadows],
            }
        return out

    def next_version(self, model: str) -> int:
        state = self._models.get(model)
        return state.top + 1 if state else 1

    def snapshot(self) -> dict[str, Any]:
        """A comparable view: every key's last record, as JSON-ready dicts."""
        return {
            f"{m}:{v.version}": v.model_dump(mode="json") for m in self.models for v in self.versions(m)
        }

    # --- changes (records to publish) -------------------------------------------------
    def _restage(
        self, record: ModelVersion, stage: Stage, *, by: str, reason: str, share: float | None = None
    ) -> ModelVersion:
        if not self.held(record.model, record.version):  # the new record must carry it
            raise RegistryError(
                f"{record.model}:{record.version}: this process keeps only its metadata (not "
                f"served, nor among the last {self.keep_artifacts} candidates or former "
                "champions); change its stage with `riverops models`, which reads the whole topic")
        # validate (not model_copy) so the change is checked and timestamps are truncated
        # to milliseconds exactly as they will be after a trip through the topic
        return ModelVersion.model_validate(
            {**record.model_dump(), "stage": stage, "changed_by": by, "reason": reason,
             "changed_at": _now(), "share": share if stage == "challenger" else None,
             "reigns": self._terms_after(record, stage)}
        )

    def _terms_after(self, record: ModelVersion, stage: Stage) -> list[int]:
        """The terms ``record``'s version holds once moved to ``stage`` (one more when it
        becomes champion)."""
        state = self._models.get(record.model, ModelState())
        held = state.terms.get(record.version, list(record.reigns))
        if stage == "champion" and record.stage != "champion":
            return [*held, state.last_term + 1]
        return held

    def new_version(
        self,
        model: str,
        *,
        spec: str,
        task: Task,
        artifact: Artifact,
        changed_by: str,
        reason: str,
        stage: Stage = "candidate",
        params: dict[str, Any] | None = None,
        seed: int | None = None,
        share: float | None = None,
        metrics: dict[str, float] | None = None,
        lineage: Lineage | None = None,
    ) -> list[ModelVersion]:
        """Records that add the next version of ``model`` (and demote the champion if it leads)."""
        record = ModelVersion(
            model=model, version=self.next_version(model), stage=stage, spec=spec, task=task,
            params=params or {}, seed=seed, share=share if stage == "challenger" else None,
            metrics=metrics or {}, lineage=lineage or Lineage(), artifact=artifact,
            changed_by=changed_by, reason=reason, changed_at=_now(),
            reigns=[self._models.get(model, ModelState()).last_term + 1] if stage == "champion" else [],
        )
        if stage != "champion":
            return [record]
        return [*self._demote_champion(model, by=changed_by, reason=f"replaced by v{record.version}"), record]

    def _demote_champion(self, model: str, *, by: str, reason: str) -> list[ModelVersion]:
        current = self.champion(model)
        return [self._restage(current, "archived", by=by, reason=reason)] if current else []

    def promote(self, model: str, version: int, *, by: str, reason: str) -> list[ModelVersion]:
        """Records making ``version`` the champion; the old champion is archived."""
        record = self.get(model, version)
        if record.stage == "rejected":
            raise RegistryError(f"{model}:{version} was rejected; register it again to reuse it")
        current = self.champion(model)
        if current is not None and current.version == version:
            raise RegistryError(f"{model}:{version} is already the champion")
        demote = self._demote_champion(model, by=by, reason=f"replaced by v{version}: {reason}")
        return [*demote, self._restage(record, "champion", by=by, reason=reason)]

    def set_stage(
        self, model: str, version: int, stage: Stage, *, by: str, reason: str, share: float | None = None
    ) -> list[ModelVersion]:
        """Records moving a version to challenger (with a share), shadow, candidate or archived;
        use :meth:`promote` for champion."""
        if stage == "champion":
            raise RegistryError("use promote to make a version the champion")
        record = self.get(model, version)
        if stage == "challenger" and not (share and 0 < share < 1):
            raise RegistryError("a challenger needs a traffic share between 0 and 1")
        if record.stage == "champion":
            raise RegistryError(
                f"{model}:{version} is the champion: promote another version or roll back first"
            )
        return [self._restage(record, stage, by=by, reason=reason, share=share)]

    def rollback(self, model: str, *, by: str, reason: str) -> list[ModelVersion]:
        """Records rejecting the current champion and restoring the previous one."""
        current = self.champion(model)
        previous = self.previous_champion(model)
        if current is None or previous is None:
            raise RegistryError(f"{model} has no previous champion to roll back to")
        return [
            self._restage(current, "rejected", by=by, reason=f"rolled back: {reason}"),
            self._restage(previous, "champion", by=by, reason=f"rollback from v{current.version}: {reason}"),
        ]
