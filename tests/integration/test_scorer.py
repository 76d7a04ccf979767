"""The scorer on the real broker: hot swap, challenger split, shadows, refusals, registry fold."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from river.datasets import synth

from riverops.kafka.clients import make_consumer
from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records, read_registry
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.scorer import ScorerStats, run_scorer
from riverops.schemas.events import Artifact, ModelVersion
from riverops.schemas.features import feature_schema
from riverops.settings import Settings

from .conftest import writer_schemas


@pytest.fixture
def scoring(settings: Settings, tmp_path: Path) -> Settings:
    scoped = settings.model_copy(
        update={"signing_key": "test-signing-key", "artifact_dir": tmp_path / "artifacts"}
    )
    # model_copy skips validation: rebuild so SecretStr and Path are typed
    scoped = Settings(**{**scoped.model_dump(), "signing_key": "test-signing-key"})
    create_topics(AdminClient(scoped.kafka_config()), TopicCatalogue.from_settings(scoped))
    return scoped


def _rows(n: int, seed: int) -> list[tuple[dict[str, Any], bool]]:
    return [(x, bool(y)) for x, y in synth.Agrawal(classification_function=0, seed=seed).take(n)]


def _register(settings: Settings, registry: Registry, *, stage: str, seed: int, reason: str,
              share: float | None = None) -> list[ModelVersion]:
    model = get_spec("logreg").build(seed=seed)
    rows = _rows(500, seed)
    learn_in_order(model, [x for x, _ in rows], [y for _, y in rows])
    records = register_trained(settings, registry, "fraud", model, spec_name="logreg",
                               stage=stage, by="test", reason=reason, seed=seed, share=share,  # type: ignore[arg-type]
                               samples=len(rows))
    publish_records(settings, records)
    registry.apply_all(records)
    return records


@dataclass
class RunningScorer:
    stop: threading.Event
    stats: ScorerStats
    thread: threading.Thread
    errors: list[BaseException]


@pytest.fixture
def scorer(scoring: Settings) -> Iterator[Any]:
    started: list[RunningScorer] = []

    def start(settings: Settings | None = None) -> RunningScorer:
        stop, stats, errors = threading.Event(), ScorerStats(), []

        def target() -> None:
            try:
                run_scorer(settings or scoring, stop=stop, stats=stats, group_id=f"scorer-{uuid.uuid4().hex[:6]}")
            except BaseException as exc:  # surfaced by the test
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        running = RunningScorer(stop, stats, thread, errors)
        started.append(running)
        deadline = time.monotonic() + 30
        while not stats.assigned and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        assert stats.assigned, f"scorer never joined its group: {errors}"
        return running

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(30)


def _send(settings: Settings, start: int, count: int, *, rate: float | None = None,
          seed: int | None = None) -> None:
    with EventProducer(settings) as producer:
        t0 = time.monotonic()
        for i, (x, _) in enumerate(_rows(count, seed=start + 7 if seed is None else seed)):
            producer.send_features(event_id=f"e{start + i}", model="fraud", entity_id="c", features=x)
            if rate:
                ahead = (i + 1) / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)


def _predictions(settings: Settings, expected: int, *, timeout: float = 60) -> list[dict[str, Any]]:
    codec = settings.codec()
    consumer = make_consumer(settings, f"read-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([TopicCatalogue.from_settings(settings).name("predictions")])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    out.append(codec.decode("PredictionEvent", message.value()))
        for message in consumer.consume(1000, 1.0):  # anything beyond the expected count
            if message.error() is None:
                out.append(codec.decode("PredictionEvent", message.value()))
    finally:
        consumer.close()
    return out


@pytest.mark.tansu
def test_hot_swap_without_loss_or_duplicates(scoring: Settings, scorer: Any) -> None:
    registry = Registry()
    _register(scoring, registry, stage="champion", seed=1, reason="v1")
    v2 = _register(scoring, registry, stage="candidate", seed=2, reason="v2")[-1]
    running = scorer()
    sender = threading.Thread(target=_send, args=(scoring, 0, 6000), kwargs={"rate": 1500})
    sender.start()
    deadline = time.monotonic() + 30
    while running.stats.predictions < 1500 and time.monotonic() < deadline:
        time.sleep(0.05)
    swap_records = registry.promote("fraud", v2.version, by="test", reason="swap")
    publish_records(scoring, swap_records)
    published_at = time.time()
    sender.join()
    predictions = _predictions(scoring, 6000)
    assert not running.errors
    per_event = Counter(p["event_id"] for p in predictions)
    assert len(per_event) == 6000, "an event was not scored"
    assert set(per_event.values()) == {1}, "an event was scored twice"
    versions = Counter(p["version"] for p in predictions)
    assert versions[1] > 0 and versions[2] > 0
    late_v1 = [p for p in predictions if p["version"] == 1 and p["predicted_at"].timestamp() > published_at + 1.0]
    assert late_v1 == [], f"{len(late_v1)} predictions by v1 more than 1 s after the swap"
    first_v2 = min(p["predicted_at"].timestamp() for p in predictions if p["version"] == 2)
    print(f"swap seen after {first_v2 - published_at:.3f}s")
    assert running.stats.swaps >= 1


def _typed(settings: Settings, folder: Path) -> Settings:
    """``settings`` writing fraud's features as a typed record (Agrawal's nine, as doubles)."""
    folder.mkdir()
    features = dict.fromkeys(next(iter(_rows(1, 0)))[0], "double")
    (folder / "fraud.avsc").write_text(json.dumps(feature_schema("fraud", features)))
    return settings.model_copy(update={"feature_schemas": folder})


def test_challenger_split_and_shadows(scoring: Settings, scorer: Any, tmp_path: Path) -> None:
    """... and features written as the generic map and as fraud's typed record, on one topic:
    a scorer given the typed schema reads both, and gives the same features the same scores."""
    registry = Registry()
    _register(scoring, registry, stage="champion", seed=1, reason="champion")
    _register(scoring, registry, stage="challenger", seed=2, reason="challenger", share=0.3)
    _register(scoring, registry, stage="shadow", seed=3, reason="shadow")
    typed = _typed(scoring, tmp_path / "features")
    scorer(typed)
    _send(scoring, 0, 5_000, seed=7)
    _send(typed, 5_000, 5_000, seed=7)  # the same rows again, typed
    predictions = _predictions(scoring, 20_000)
    by_variant = Counter(p["variant"] for p in predictions)
    assert by_variant["champion"] + by_variant["challenger"] == 10_000
    assert by_variant["shadow"] == 10_000
    share = by_variant["challenger"] / 10_000
    assert abs(share - 0.3) <= 0.02, share
    shadowed = {p["event_id"] for p in predictions if p["variant"] == "shadow"}
    assert len(shadowed) == 10_000
    shadow = {int(p["event_id"][1:]): p["scores"] for p in predictions if p["variant"] == "shadow"}
    # equal to rounding: the last bit of a batched product depends on where a row falls in
    # its batch (BLAS handles a batch's remainder rows with another kernel), and the two
    # passes are cut into batches differently
    differ = [i for i in range(5_000)
              if any(not math.isclose(shadow[i][c], shadow[i + 5_000][c], rel_tol=1e-12, abs_tol=1e-15)
                     for c in shadow[i])]
    assert differ == [], [(i, shadow[i], shadow[i + 5_000]) for i in differ[:3]]
    assert writer_schemas(scoring, "features", 10_000) == {
        typed.codec().store.writer_for("FeatureEvent", {"model": "fraud"}).fingerprint: 5_000,
        scoring.codec().store.reader("FeatureEvent").fingerprint: 5_000}


def test_tampered_and_unsigned_versions_are_refused(scoring: Settings, scorer: Any) -> None:
    registry = Registry()
    _register(scoring, registry, stage="champion", seed=1, reason="good")
    running = scorer()
    good = registry.champion("fraud")
    assert good is not None
    for signature in ("0" * 64, "f" * 64):  # unsigned (zeros) and wrongly signed
        bad_artifact = Artifact(inline=good.artifact.inline, sha256=good.artifact.sha256,
                                signature=signature, size=good.artifact.size)
        bad = registry.new_version("fraud", spec="logreg", task="binary", artifact=bad_artifact,
                                   stage="champion", changed_by="mallory", reason="tampered")
        publish_records(scoring, bad)
        registry.apply_all(bad)
    tampered_bytes = bytearray(good.artifact.inline or b"")
    tampered_bytes[-5] ^= 0xFF
    tampered = registry.new_version(
        "fraud", spec="logreg", task="binary", stage="champion", changed_by="mallory", reason="bytes",
        artifact=Artifact(inline=bytes(tampered_bytes), sha256=good.artifact.sha256,
                          signature=good.artifact.signature, size=good.artifact.size),
    )
    publish_records(scoring, tampered)
    _send(scoring, 0, 500)
    predictions = _predictions(scoring, 500)
    assert len(predictions) == 500
    assert {p["version"] for p in predictions} == {good.version}, "a refused version served"
    assert running.stats.refusals >= 3


def test_registry_rebuilt_in_a_fresh_process_equals_the_live_one(scoring: Settings) -> None:
    registry = Registry()
    _register(scoring, registry, stage="champion", seed=1, reason="v1")
    _register(scoring, registry, stage="challenger", seed=2, reason="v2", share=0.1)
    v3 = _register(scoring, registry, stage="candidate", seed=3, reason="v3")[-1]
    for change in (
        lambda: registry.promote("fraud", v3.version, by="ops", reason="better"),
        lambda: registry.rollback("fraud", by="ops", reason="worse live"),
    ):
        records = change()
        publish_records(scoring, records)
        registry.apply_all(records)
    code = (
        "import json,sys; from riverops.settings import Settings; "
        "from riverops.kafka.registry_topic import read_registry; "
        "s = Settings(bootstrap_servers=sys.argv[1], topic_prefix=sys.argv[2]); "
        "print(json.dumps(read_registry(s).snapshot(), sort_keys=True))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, scoring.bootstrap_servers, scoring.topic_prefix],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rebuilt = json.loads(out.stdout)
    assert rebuilt == json.loads(json.dumps(registry.snapshot(), sort_keys=True))
    champion = read_registry(scoring).champion("fraud")
    assert champion is not None and champion.version == 1  # rolled back to v1
