"""The registry fold: last record per key wins, aliases, promotion, rollback, history."""

from __future__ import annotations

import pytest

from riverops.models.registry import Registry
from riverops.schemas.errors import RegistryError
from riverops.schemas.events import Artifact, ModelVersion

ART = Artifact(inline=b"x", sha256="0" * 64, signature="1" * 64, size=1)


def _add(registry: Registry, stage: str = "candidate", share: float | None = None) -> ModelVersion:
    records = registry.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                   stage=stage, share=share, changed_by="t", reason="r")  # type: ignore[arg-type]
    registry.apply_all(records)
    return records[-1]


def test_versions_count_up_and_the_first_champion_leads() -> None:
    registry = Registry()
    v1 = _add(registry, "champion")
    v2 = _add(registry)
    assert (v1.version, v2.version) == (1, 2)
    assert registry.champion("fraud") == v1


def test_promote_archives_the_old_champion() -> None:
    registry = Registry()
    _add(registry, "champion")
    _add(registry)
    registry.apply_all(registry.promote("fraud", 2, by="ops", reason="better"))
    champion = registry.champion("fraud")
    assert champion is not None and champion.version == 2 and champion.changed_by == "ops"
    assert registry.get("fraud", 1).stage == "archived"


def test_rollback_restores_the_previous_champion_and_rejects_the_bad_one() -> None:
    registry = Registry()
    _add(registry, "champion")
    _add(registry)
    registry.apply_all(registry.promote("fraud", 2, by="ops", reason="better"))
    registry.apply_all(registry.rollback("fraud", by="monitor", reason="accuracy fell"))
    champion = registry.champion("fraud")
    assert champion is not None and champion.version == 1
    assert registry.get("fraud", 2).stage == "rejected"
    with pytest.raises(RegistryError):
        registry.promote("fraud", 2, by="ops", reason="again")


def test_rollback_without_a_previous_champion_is_refused() -> None:
    registry = Registry()
    _add(registry, "champion")
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("fraud", by="ops", reason="x")


def test_new_champion_record_demotes_the_current_one() -> None:
    registry = Registry()
    _add(registry, "champion")
    _add(registry, "champion")
    assert registry.get("fraud", 1).stage == "archived"
    assert [v.version for v in registry.with_stage("fraud", "champion")] == [2]


def test_plan_has_challengers_with_shares_and_shadows() -> None:
    registry = Registry()
    _add(registry, "champion")
    _add(registry, "challenger", share=0.2)
    _add(registry, "shadow")
    plan = registry.plan("fraud")
    assert plan.champion is not None and plan.champion.version == 1
    assert [(c.version, c.share) for c in plan.challengers] == [(2, 0.2)]
    assert [s.version for s in plan.shadows] == [3]
    assert registry.aliases() == {"fraud": {"champion": [1], "challenger": [2], "shadow": [3]}}


def test_a_challenger_needs_a_share_and_the_champion_cannot_be_archived() -> None:
    registry = Registry()
    _add(registry, "champion")
    _add(registry)
    with pytest.raises(RegistryError, match="share"):
        registry.set_stage("fraud", 2, "challenger", by="o", reason="r")
    with pytest.raises(RegistryError, match="champion"):
        registry.set_stage("fraud", 1, "archived", by="o", reason="r")


def test_the_fold_is_order_deterministic() -> None:
    live = Registry()
    log: list[ModelVersion] = []
    for stage in ("champion", "candidate", "challenger", "shadow"):
        records = live.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                   stage=stage, share=0.1 if stage == "challenger" else None,  # type: ignore[arg-type]
                                   changed_by="t", reason="r")
        live.apply_all(records)
        log += records
    promote = live.promote("fraud", 2, by="o", reason="r")
    live.apply_all(promote)
    rollback = live.rollback("fraud", by="o", reason="r")
    live.apply_all(rollback)
    log += promote + rollback
    assert Registry().apply_all(log).snapshot() == live.snapshot()


def test_unknown_version_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="unknown model version fraud:9"):
        Registry().get("fraud", 9)


def test_times_champion_counts_reigns_so_a_restored_champion_is_known() -> None:
    registry = Registry()
    for stage in ("champion", "candidate"):
        registry.apply_all(registry.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                                stage=stage, changed_by="t", reason=stage))
    assert registry.times_champion("fraud", 1) == 1 and registry.times_champion("fraud", 2) == 0
    registry.apply_all(registry.promote("fraud", 2, by="t", reason="better"))
    registry.apply_all(registry.rollback("fraud", by="t", reason="worse live"))
    assert registry.champion("fraud").version == 1  # type: ignore[union-attr]
    assert registry.times_champion("fraud", 1) == 2 and registry.times_champion("fraud", 2) == 1
    assert registry.times_champion("nope", 1) == 0


def _story() -> tuple[Registry, list[ModelVersion]]:
    """v1 champion, v2 promoted, rolled back to v1, v3 promoted: every record in order."""
    registry, log = Registry(), []

    def apply(records: list[ModelVersion]) -> None:
        registry.apply_all(records)
        log.extend(records)

    apply(registry.new_version("fraud", spec="logreg", task="binary", artifact=ART, stage="champion",
                               changed_by="t", reason="first"))
    apply(registry.new_version("fraud", spec="logreg", task="binary", artifact=ART, changed_by="t", reason="r"))
    apply(registry.promote("fraud", 2, by="ops", reason="better"))
    apply(registry.rollback("fraud", by="retrainer", reason="worse live"))
    apply(registry.new_version("fraud", spec="logreg", task="binary", artifact=ART, changed_by="t", reason="r"))
    apply(registry.promote("fraud", 3, by="ops", reason="better"))
    return registry, log


def test_champion_history_survives_compaction() -> None:
    full, log = _story()
    last = {record.key: record for record in log}  # what compaction leaves: the last record per key
    compacted = Registry().apply_all(sorted(last.values(), key=log.index))
    for registry in (full, compacted):
        champion, previous = registry.champion("fraud"), registry.previous_champion("fraud")
        assert champion is not None and champion.version == 3
        assert previous is not None and previous.version == 1
        assert [registry.times_champion("fraud", v) for v in (1, 2, 3)] == [2, 1, 1]
    assert full.get("fraud", 1).reigns == [1, 3] and full.get("fraud", 3).reigns == [4]


def test_records_without_terms_still_build_the_history_in_topic_order() -> None:
    _, log = _story()
    legacy = [ModelVersion.model_validate({**r.model_dump(), "reigns": []}) for r in log]
    registry = Registry().apply_all(legacy)  # as written before records carried their terms
    assert [registry.times_champion("fraud", v) for v in (1, 2, 3)] == [2, 1, 1]
    previous = registry.previous_champion("fraud")
    assert previous is not None and previous.version == 1
    # the next change writes the terms the fold counted into the record
    (restaged,) = registry.set_stage("fraud", 1, "archived", by="ops", reason="retire")
    assert restaged.reigns == [1, 3]


# --- a worker's registry holds a bounded set of artifacts --------------------------------

def _version(registry: Registry, stage: str, by: str) -> ModelVersion:
    records = registry.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                   stage=stage, changed_by=by, reason="r")  # type: ignore[arg-type]
    registry.apply_all(records)
    return records[-1]


def test_a_bounded_registry_keeps_served_recent_candidates_and_former_champions() -> None:
    bounded, whole = Registry(keep_artifacts=2), Registry()
    log: list[ModelVersion] = []
    for step in range(200):  # a learner snapshot every step, a retrainer champion every 20
        stage, by = ("champion", "retrainer") if step % 20 == 0 else ("candidate", "learner")
        records = whole.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                    stage=stage, changed_by=by, reason="r")  # type: ignore[arg-type]
        whole.apply_all(records)
        log.extend(records)
    whole.apply_all(whole.set_stage("fraud", 199, "shadow", by="ops", reason="watch it"))
    log.extend(whole.set_stage("fraud", 199, "shadow", by="ops", reason="watch it"))
    bounded.apply_all(log)
    held = {r.version for r in bounded.versions("fraud") if bounded.held("fraud", r.version)}
    champions = [v for v in range(1, 200, 20)]
    # the champion and two former ones, the shadow, the learner's two newest candidates
    assert {champions[-1], champions[-2], champions[-3], 199, 198, 197} <= held
    assert len(held) <= 2 * (2 + 2)  # the release runs in passes: never more than twice the bound
    assert not bounded.held("fraud", 2) and whole.held("fraud", 2)
    # metadata is bounded too: the versions kept, the newest one, in passes
    kept = bounded.versions("fraud")
    assert len(kept) <= 2 * (3 + 1 + 2 + 1) + 8, len(kept)  # champions, shadow, candidates, newest
    assert {r.version for r in kept} >= held and kept[-1].version == 200
    by_version = {r.version: r for r in whole.versions("fraud")}
    assert [r.model_dump(exclude={"artifact"}) for r in kept] == [
        by_version[r.version].model_dump(exclude={"artifact"}) for r in kept]
    assert bounded.next_version("fraud") == whole.next_version("fraud") == 201  # numbers never go back
    assert bounded.sizes() == (len(kept), len(held))
    # what a worker may publish: a rollback (its target is held); not a forgotten version's change
    bounded.apply_all(bounded.rollback("fraud", by="retrainer", reason="worse"))
    assert bounded.champion("fraud").version == champions[-2]  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="no longer kept by this process"):
        bounded.promote("fraud", 2, by="retrainer", reason="old one")
    assert whole.promote("fraud", 2, by="ops", reason="old one")[-1].artifact == ART


def test_a_bounded_registry_stays_bounded_over_many_versions() -> None:
    """10,000 learner snapshots and a champion every 100: what a worker keeps does not grow."""
    bounded, sizes = Registry(keep_artifacts=3), []
    for step in range(10_000):
        stage, by = ("champion", "retrainer") if step % 100 == 0 else ("candidate", "learner")
        bounded.apply_all(bounded.new_version("fraud", spec="logreg", task="binary", artifact=ART,
                                              stage=stage, changed_by=by, reason="r"))  # type: ignore[arg-type]
        if step % 1000 == 999:
            sizes.append(bounded.sizes())
    assert max(versions for versions, _ in sizes) <= 2 * (4 + 3 + 1) + 8, sizes
    assert max(artifacts for _, artifacts in sizes) <= 2 * (3 + 2), sizes
    assert bounded.next_version("fraud") == 10_001
    assert bounded.champion("fraud").version == 9_901  # type: ignore[union-attr]
    assert bounded.previous_champion("fraud").version == 9_801  # type: ignore[union-attr]
    assert bounded.times_champion("fraud", 9_901) == 1


def test_a_released_version_comes_back_when_a_record_carries_its_bytes_again() -> None:
    bounded, whole = Registry(keep_artifacts=1), Registry()
    for _ in range(12):
        for registry in (bounded, whole):
            _version(registry, "candidate", "learner")
    assert not bounded.held("fraud", 1)
    change = whole.promote("fraud", 1, by="ops", reason="the CLI reads the whole topic")
    bounded.apply_all(change)
    assert bounded.held("fraud", 1) and bounded.champion("fraud").version == 1  # type: ignore[union-attr]


def test_the_registries_of_a_process_share_one_copy_of_each_artifact() -> None:
    """Four roles' registries fold the same records, each decoded by its own follower (four
    equal bytes objects per artifact): they hold one object, and what none keeps is dropped."""
    import gc
    import hashlib

    from riverops.models.shared import SharedArtifacts

    shared = SharedArtifacts()
    roles = [Registry(keep_artifacts=1, shared=shared) for _ in range(4)]
    writer = Registry()
    log: list[ModelVersion] = []
    for step in range(40):
        blob = f"model {step}".encode() * 1000
        art = Artifact(inline=blob, sha256=hashlib.sha256(blob).hexdigest(), signature="1" * 64, size=len(blob))
        records = writer.new_version("fraud", spec="logreg", task="binary", artifact=art,
                                     stage="champion" if step == 0 else "candidate", changed_by="learner", reason="r")
        writer.apply_all(records)
        log.extend(records)
    for registry in roles:
        registry.apply_all(ModelVersion.model_validate_json(r.model_dump_json()) for r in log)  # a copy each
    newest = [r.get("fraud", 40).artifact.inline for r in roles]
    assert newest[0] == log[-1].artifact.inline and all(b is newest[0] for b in newest)
    champion = [r.get("fraud", 1).artifact.inline for r in roles]
    assert all(b is champion[0] for b in champion)
    held = {r.artifact.sha256 for registry in roles for r in registry.versions("fraud") if r.artifact.inline}
    assert len(shared) <= len(held) + 2 * (1 + 2) and len(held) < 10  # bounded, not 40
    del roles, registry
    gc.collect()
    shared.prune()
    assert len(shared) == 0  # no registry left: nothing kept for them


def test_a_copy_of_a_sharing_registry_is_a_scratch_one() -> None:
    """The retrainer tries a change on a deep copy before publishing it: the copy folds on
    its own and shares nothing with the process."""
    import copy

    from riverops.models.shared import SharedArtifacts

    shared = SharedArtifacts()
    registry = Registry(keep_artifacts=1, shared=shared)
    _add(registry, "champion")
    scratch = copy.deepcopy(registry)
    for _ in range(12):
        _add(scratch)
    assert scratch.next_version("fraud") == 14 and registry.next_version("fraud") == 2
    assert len(shared) == 1 and registry.held("fraud", 1)
