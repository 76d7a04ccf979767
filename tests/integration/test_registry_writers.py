"""Registry writers in separate processes never overwrite each other's versions (Apache
Kafka, ``exactly_once``): they share one transactional id, so each change is read,
numbered and committed while the others are fenced (riverops.kafka.registry_topic.publish_change)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from riverops.kafka.clients import make_producer
from riverops.kafka.registry_topic import RegistryFollower, publish_change, read_registry, writer_id
from riverops.models.registry import Registry
from riverops.schemas.events import Artifact, ModelVersion
from riverops.settings import Settings

from ..conftest import ENGINE

pytestmark = pytest.mark.skipif(ENGINE != "kafka", reason="transactions need Apache Kafka")

WRITERS, EACH = 3, 20
ART = Artifact(inline=b"x", sha256="0" * 64, signature="0" * 64, size=1)

# One writer process: reads the registry, says "ready", waits for "go" on stdin, then
# publishes EACH new versions of model "m" (reason "<name>#<i>") and prints, per version,
# the number it got and how long the publish took.
WRITER = """
import json, sys, time
from riverops.kafka.registry_topic import RegistryFollower, publish_change
from riverops.models.registry import Registry
from riverops.schemas.events import Artifact
from riverops.settings import Settings
settings, name, each = Settings(**json.loads(sys.argv[1])), sys.argv[2], int(sys.argv[3])
art = Artifact(inline=b"x", sha256="0" * 64, signature="0" * 64, size=1)
registry, follower = Registry(), RegistryFollower(settings)
follower.read_to_end(registry)
print("ready", flush=True)
sys.stdin.readline()
for i in range(each):
    began = time.perf_counter()
    built = []
    def build(r, i=i):
        built.append(1)
        return r.new_version("m", spec="logreg", task="binary", artifact=art, changed_by=name,
                             reason=f"{name}#{i}")
    (record,) = publish_change(settings, build, registry=registry, follower=follower)
    print(json.dumps({"marker": record.reason, "version": record.version, "builds": len(built),
                      "seconds": time.perf_counter() - began}), flush=True)
follower.close()
"""


def _new_version(registry: Registry, by: str, reason: str) -> list[ModelVersion]:
    return registry.new_version("m", spec="logreg", task="binary", artifact=ART, changed_by=by, reason=reason)


def test_three_writer_processes_lose_no_version(loop_settings: Settings) -> None:
    settings = loop_settings
    config = json.dumps({"bootstrap_servers": settings.bootstrap_servers, "topic_prefix": settings.topic_prefix,
                         "processing_guarantee": "exactly_once"})
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, config, f"w{n}", str(EACH)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(WRITERS)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:  # all three start together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    told = [json.loads(line) for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    versions = read_registry(settings).versions("m")

    assert sorted(v.version for v in versions) == list(range(1, WRITERS * EACH + 1))
    assert sorted(v.reason for v in versions) == sorted(f"w{n}#{i}" for n in range(WRITERS) for i in range(EACH))
    # each writer was told the number its version really holds
    assert {t["marker"]: t["version"] for t in told} == {v.reason: v.version for v in versions}
    seconds = [t["seconds"] for t in told]
    print(f"\n{len(told)} publishes by {WRITERS} processes at once: median {statistics.median(seconds):.3f}s, "
          f"max {max(seconds):.3f}s; builds again after a fence: {sum(t['builds'] - 1 for t in told)}")


def test_a_writer_fenced_between_its_read_and_its_commit_starts_again(loop_settings: Settings) -> None:
    settings = loop_settings
    """Another process takes the next number while this writer is building: the broker
    refuses this writer's commit, and it numbers its version again after the other's."""
    codec = settings.codec()
    registry, follower = Registry(), RegistryFollower(settings)
    calls: list[int] = []

    def build(r: Registry) -> list[ModelVersion]:
        calls.append(r.next_version("m"))
        if len(calls) == 1:  # meanwhile, another writer commits the number this one chose
            other: Producer = make_producer(settings, **{"transactional.id": writer_id(settings)})
            other.init_transactions(30)
            other.begin_transaction()
            (theirs,) = _new_version(r, "other", "theirs")
            other.produce(follower.topic, key=theirs.key, value=codec.encode("ModelVersion", theirs.to_avro()))
            other.commit_transaction(30)
        return _new_version(r, "me", "mine")

    try:
        (mine,) = publish_change(settings, build, registry=registry, follower=follower)
    finally:
        follower.close()
    assert calls == [1, 2] and mine.version == 2
    assert [(v.version, v.reason) for v in read_registry(settings).versions("m")] == [(1, "theirs"), (2, "mine")]


def test_changes_are_built_from_every_committed_change(loop_settings: Settings) -> None:
    settings = loop_settings
    """Without a worker's registry, each change is built from a fresh read that holds the
    changes committed before (the promotion finds v1, the next version is 2)."""
    publish_change(settings, lambda r: _new_version(r, "a", "first"))
    publish_change(settings, lambda r: r.promote("m", 1, by="b", reason="go"))
    (champion,) = publish_change(settings, lambda r: _new_version(r, "c", "second"))
    registry = read_registry(settings)
    assert champion.version == 2
    assert [(v.version, v.stage) for v in registry.versions("m")] == [(1, "champion"), (2, "candidate")]
