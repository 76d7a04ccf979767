"""The registry topic really compacts on Apache Kafka, and the fold of the compacted topic
equals the fold of the whole history (the embedded broker never compacts).

A cluster of its own (the log cleaner wakes every 0.5 s) gets the catalogue's registry
topic (``cleanup.policy=compact``, ``min.compaction.lag.ms=0``) with 100 ms segments. Three
models go through many versions and many stage changes each (candidate, challenger,
shadow, archived, champion, a rollback), published in rounds so that every round lands in
a segment of its own; most records are superseded. Compaction is held back while the
history is published and read in full, then released; once the cleaner removed records
(fewer records from the beginning, gaps in the offsets) a fresh ``read_registry`` must
give the same registry.

Champion history survives too: every record carries the champion terms its version held
(``reigns``). Before it did, the fold learnt the order of champions from the champion
records themselves, compaction kept only the last record of each key, and a compacted
topic folded to a history of one champion: rollback refused, probation never started.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from riverops.kafka.clients import make_consumer
from riverops.kafka.cluster import KafkaCluster
from riverops.kafka.registry_topic import publish_records, read_registry
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.models.registry import Registry
from riverops.schemas.errors import RegistryError
from riverops.schemas.events import Artifact, ModelVersion
from riverops.settings import Settings

from ..conftest import ENGINE, broker_dir

pytestmark = [
    pytest.mark.faults,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        ENGINE != "kafka" and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        reason="needs Apache Kafka's log cleaner (Tansu never compacts; its pass runs only -m tansu)",
    ),
]
MODELS = ("fraud", "pricing", "churn")
ROUNDS = 12
SEGMENT_MS = 100
ART = Artifact(inline=b"not-a-model" * 40, sha256="0" * 64, signature="0" * 64, size=440)
NEXT_STAGE: dict[str, tuple[Any, float | None]] = {  # the cycle of a version that is not champion
    "candidate": ("challenger", 0.1),
    "challenger": ("shadow", None),
    "shadow": ("archived", None),
    "archived": ("candidate", None),
}


def _round(live: Registry, number: int) -> list[ModelVersion]:
    """One round of changes to every model, applied to ``live`` as they are made."""
    out: list[ModelVersion] = []

    def do(records: list[ModelVersion]) -> None:
        live.apply_all(records)
        out.extend(records)

    for model in MODELS:
        if number == 0:
            do(live.new_version(model, spec="logreg", task="binary", artifact=ART, stage="champion",
                                changed_by="test", reason="first champion"))
        do(live.new_version(model, spec="logreg", task="binary", artifact=ART, changed_by="test",
                            reason=f"round {number}", metrics={"roc_auc": 0.5 + number / 100}))
        champion = live.champion(model)
        for record in live.versions(model)[-5:]:  # move the recent versions along the cycle
            if record.stage in NEXT_STAGE and record is not champion:
                stage, share = NEXT_STAGE[record.stage]
                do(live.set_stage(model, record.version, stage, by="test", share=share,
                                  reason=f"round {number}: {record.stage} -> {stage}"))
        if number % 2 == 1:
            challengers = live.with_stage(model, "challenger")
            if challengers:
                do(live.promote(model, challengers[-1].version, by="test", reason=f"round {number}"))
        if number == 7:
            do(live.rollback(model, by="test", reason="worse live"))
    return out


def _observable(registry: Registry) -> dict[str, Any]:
    """What the registry serves and shows: every key's last record, champions, aliases, plans."""
    return {
        "snapshot": registry.snapshot(),
        "champion": {m: getattr(registry.champion(m), "version", None) for m in registry.models},
        "aliases": registry.aliases(),
        "plans": {m: [(v.version, v.stage, v.share) for v in registry.plan(m).versions]
                  for m in registry.models},
    }


def _history(registry: Registry) -> dict[str, Any]:
    """What the fold knows beyond the last records: the previous champion, reigns per version."""
    return {
        m: {"previous_champion": getattr(registry.previous_champion(m), "version", None),
            "reigns": {v.version: registry.times_champion(m, v.version) for v in registry.versions(m)}}
        for m in registry.models
    }


def _rollback(registry: Registry) -> str:
    try:
        records = registry.rollback("fraud", by="test", reason="what a rollback would do")
    except RegistryError as exc:
        return f"refused ({exc})"
    return ", ".join(f"v{r.version} -> {r.stage}" for r in records)


def _read_raw(settings: Settings, topic: str) -> tuple[list[tuple[int, ModelVersion]], int, int]:
    """(offset, record) of everything in the registry partition now, and its watermarks."""
    codec = settings.codec()
    consumer = make_consumer(settings, f"raw-{uuid.uuid4().hex[:6]}")
    partition = TopicPartition(topic, 0)
    try:
        low, high = consumer.get_watermark_offsets(partition, timeout=10, cached=False)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[tuple[int, ModelVersion]] = []
        deadline = time.monotonic() + 30
        while (not out or out[-1][0] < high - 1) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    record = ModelVersion.from_avro(codec.decode("ModelVersion", message.value()))
                    out.append((message.offset(), record))  # type: ignore[arg-type]
        return out, low, high
    finally:
        consumer.close()


def _segments(cluster: KafkaCluster, topic: str) -> int:
    return len(list((cluster.data_dir / "node-1" / "data" / f"{topic}-0").glob("*.log")))


def _set_configs(admin: AdminClient, topic: str, configs: dict[str, str]) -> None:
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET) for name, value in configs.items()
    ])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(15)


@dataclass
class Compacted:
    produced: int
    before_raw: int
    after_raw: int
    low: int
    high: int
    gaps: int
    segments_before: int
    segments_after: int
    waited: float
    live: Registry
    before: Registry  # the fold of the whole history, as read from the topic
    after: Registry  # read_registry of the compacted topic
    last_per_key: dict[str, ModelVersion]
    after_records: list[tuple[int, ModelVersion]]


@pytest.fixture(scope="module")
def compacted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compacted]:
    directory: Path = tmp_path_factory.mktemp("compaction")
    cluster = KafkaCluster(data_dir=broker_dir(directory), overrides={"log.cleaner.backoff.ms": "500"})
    cluster.start()
    try:
        settings = Settings(bootstrap_servers=cluster.bootstrap_servers,
                            topic_prefix=f"t-{uuid.uuid4().hex[:8]}.", partitions=1)
        catalogue = TopicCatalogue.from_settings(settings)
        topic = catalogue.name("model-registry")
        assert catalogue.spec("model-registry").config["cleanup.policy"] == "compact"
        admin = AdminClient(settings.kafka_config())
        create_topics(admin, catalogue)
        # small segments, a cleaner that starts at once; compaction held while the history is written
        _set_configs(admin, topic, {"segment.ms": str(SEGMENT_MS), "min.cleanable.dirty.ratio": "0.01",
                                    "min.compaction.lag.ms": "3600000"})
        live, produced = Registry(), []
        for number in range(ROUNDS):
            records = _round(live, number)
            publish_records(settings, records)
            produced += records
            time.sleep(3 * SEGMENT_MS / 1000)  # the next round rolls a new segment
        spare = next(v for v in reversed(live.versions("fraud")) if v.stage in ("candidate", "archived"))
        last = live.set_stage("fraud", spare.version, "shadow", by="test",
                              reason="the record that rolls the last history segment")
        live.apply_all(last)
        publish_records(settings, last)
        produced += last

        before_records, _low, high = _read_raw(settings, topic)
        assert [o for o, _ in before_records] == list(range(len(produced))) == list(range(high))
        assert [r for _, r in before_records] == produced
        before = Registry().apply_all(r for _, r in before_records)
        assert _observable(before) == _observable(read_registry(settings)) == _observable(live)
        segments_before = _segments(cluster, topic)

        _set_configs(admin, topic, {"min.compaction.lag.ms": "0"})  # the catalogue's value
        released = time.monotonic()
        after_records, counts, low = before_records, [len(before_records)], 0
        while time.monotonic() - released < 120:
            time.sleep(1)
            after_records, low, high = _read_raw(settings, topic)
            counts.append(len(after_records))
            if counts[-1] < len(produced) and counts[-1] == counts[-2] == counts[-3]:
                break  # compacted, and stable for 2 s
        waited = time.monotonic() - released
        offsets = [o for o, _ in after_records]
        yield Compacted(
            produced=len(produced), before_raw=len(before_records), after_raw=len(after_records),
            low=low, high=high, gaps=sum(1 for a, b in pairwise(offsets) if b != a + 1),
            segments_before=segments_before, segments_after=_segments(cluster, topic),
            waited=waited, live=live, before=before, after=read_registry(settings),
            last_per_key={r.key: r for r in produced}, after_records=after_records,
        )
    finally:
        cluster.remove()


def test_registry_topic_compacts_and_the_fold_is_unchanged(compacted: Compacted) -> None:
    c = compacted
    print(f"\nregistry topic: {c.produced} records produced ({len(c.last_per_key)} keys), "
          f"{c.before_raw} read before compaction, {c.after_raw} after ({c.waited:.1f}s after "
          f"release); watermarks low {c.low} high {c.high}; {c.gaps} gaps in the offsets; "
          f"segments {c.segments_before} -> {c.segments_after}")
    assert c.after_raw < c.produced, "the cleaner removed nothing"
    assert c.after_raw <= len(c.last_per_key) + 10, "most superseded records should be gone"
    assert c.gaps > 0 and c.high == c.produced  # offsets keep their numbers: the log has holes
    # every key's last record survived, in the order of its offset
    survivors = {r.key: r for _, r in c.after_records}
    assert survivors == c.last_per_key
    assert _observable(c.after) == _observable(c.before) == _observable(c.live)
    assert c.after.records_applied == c.after_raw < c.before.records_applied


def test_champion_history_survives_compaction(compacted: Compacted) -> None:
    before, after = _history(compacted.before), _history(compacted.after)
    print(f"\nchampion history before compaction {before}\nafter {after}\n"
          f"rollback of fraud before: {_rollback(compacted.before)}; after: {_rollback(compacted.after)}")
    assert after == before
