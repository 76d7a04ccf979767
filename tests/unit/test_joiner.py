"""The joiner core: any arrival order, duplicates, TTL in stream time, snapshots."""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections import defaultdict
from importlib import resources
from typing import Any

import pytest

from riverops.kafka.deadletter import dead_letter
from riverops.roles.joiner import OUTCOMES, FlushResult, JoinCore, JoinInput, Kind
from riverops.roles.joiner.state import prediction_layout_fingerprint
from riverops.schemas import events as ev
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.errors import ConfigError, DecodeError, RiveropsError

CODEC = SingleObjectCodec()
TOPICS: dict[Kind, str] = {"features": "features", "prediction": "predictions", "label": "labels"}
VARIANTS = ("champion", "challenger", "shadow")


def features_of(event_id: str, t: int = 1_000, *, model: str = "fraud") -> bytes:
    values = {f"f{i}": i / 7 for i in range(20)}
    return CODEC.encode("FeatureEvent", {"event_id": event_id, "model": model,
                                         "entity_id": "card-1", "event_time": t, "features": values})


def prediction_of(event_id: str, t: int = 1_000, *, version: int = 3, variant: str = "champion",
                  latency: float = 0.001) -> bytes:
    return CODEC.encode("PredictionEvent", {
        "event_id": event_id, "model": "fraud", "version": version, "variant": variant,
        "prediction": True, "scores": {"True": 0.75, "False": 0.25}, "latency": latency,
        "event_time": t, "predicted_at": t + 2})


def label_of(event_id: str, t: int = 5_000, *, model: str = "fraud", label: Any = True) -> bytes:
    return CODEC.encode("LabelEvent", {"event_id": event_id, "model": model, "label": label,
                                       "label_time": t})


class Feed:
    """Builds JoinInputs with the next offset of each (topic, partition)."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)

    def __call__(self, kind: Kind, event_id: str, payload: bytes | None, t: int,
                 partition: int = 0) -> JoinInput:
        key = (TOPICS[kind], partition)
        offset = self.offsets[key]
        self.offsets[key] += 1
        return JoinInput(kind, event_id, payload, t, (key[0], partition, offset))


def ids(result: FlushResult) -> list[str]:
    return [record["event_id"] for record in result.feedback]


def letters(result: FlushResult) -> list[dict[str, Any]]:
    """The DeadLetter records the shell makes of a flush's refusals."""
    return [dead_letter(origin, error, processor="joiner") for origin, error in result.rejected]


def refusals(result: FlushResult) -> list[tuple[Any, str, str]]:
    """A flush's refusals, comparable across runs: (origin, error class, reason)."""
    return [(origin, type(error).__name__, str(error)) for origin, error in result.rejected]


def triple(feed: Feed, event_id: str, t: int = 1_000) -> dict[Kind, JoinInput]:
    return {
        "features": feed("features", event_id, features_of(event_id, t), t),
        "prediction": feed("prediction", event_id, prediction_of(event_id, t), t + 2),
        "label": feed("label", event_id, label_of(event_id, t + 4_000), t + 4_000),
    }


# -- joining --------------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(["features", "prediction", "label"])))
@pytest.mark.parametrize("batched", [True, False])
def test_every_arrival_order_gives_one_feedback(order: tuple[Kind, ...], batched: bool) -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    records = triple(feed, "e1")
    emitted: list[str] = []
    for index, kind in enumerate(order):
        core.add(*records[kind])
        if not batched or index == len(order) - 1:
            result = core.flush()
            emitted += ids(result)
            assert emitted == (["e1"] if index == len(order) - 1 else [])
    assert core.stats().joined == 1 and core.stats().pending == 0


def test_feedback_validates_and_encodes() -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    core.add_many(triple(feed, "e1").values())
    (record,) = core.flush().feedback
    model = ev.FeedbackEvent.from_avro(record)
    assert model.label is True and model.features["f7"] == 1.0 and len(model.features) == 20
    assert model.predictions == [ev.MadePrediction(
        version=3, variant="champion", prediction=True, scores={"True": 0.75, "False": 0.25})]
    assert CODEC.decode("FeedbackEvent", CODEC.encode("FeedbackEvent", record)) == record


def test_every_prediction_of_an_event_is_in_its_feedback() -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    core.add(*feed("prediction", "e1", prediction_of("e1", variant="shadow", version=5), 1))
    core.add(*feed("features", "e1", features_of("e1"), 1))
    core.add(*feed("prediction", "e1", prediction_of("e1", variant="challenger", version=4), 2))
    core.add(*feed("label", "e1", label_of("e1"), 3))
    core.add(*feed("prediction", "e1", prediction_of("e1", variant="champion", version=3), 4))
    # the scorer re-scored after a crash: same version and variant, other bytes
    core.add(*feed("prediction", "e1", prediction_of("e1", variant="shadow", version=5,
                                                     latency=0.5), 5))
    result = core.flush()
    (record,) = result.feedback
    made = [(p["variant"], p["version"]) for p in record["predictions"]]
    assert made == [("champion", 3), ("challenger", 4), ("shadow", 5)]
    assert result.outcomes["duplicates"] == 1 and result.outcomes["joined"] == 1


def test_duplicates_and_late_records_never_double_count() -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    records = triple(feed, "e1")
    core.add_many(records.values())
    core.add(*feed("features", "e1", features_of("e1"), 10))  # produced twice
    assert ids(core.flush()) == ["e1"]
    core.add(*feed("label", "e1", label_of("e1"), 20))
    core.add(*feed("features", "e1", features_of("e1"), 20))
    core.add(*feed("prediction", "e1", prediction_of("e1"), 20))
    core.add(*feed("prediction", "e1", prediction_of("e1", variant="shadow", version=9), 20))
    core.add_many(records.values())  # re-delivered by Kafka: below the consumed positions
    result = core.flush()
    assert result.feedback == []
    assert {k: v for k, v in result.outcomes.items() if v} == {
        "duplicates": 2, "late_predictions": 2, "redelivered": 3}
    stats = core.stats()
    assert (stats.joined, stats.duplicates, stats.pending, stats.done) == (1, 3, 0, 1)


def test_positions() -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    core.add(*feed("features", "e0", features_of("e0"), 1))
    core.add_many(triple(feed, "e1").values())
    core.add(*feed("label", "e2", label_of("e2"), 9))
    core.flush()
    assert core.positions() == {("features", 0): 2, ("predictions", 0): 1, ("labels", 0): 2}
    assert core.stats().pending == 2 and core.stats().pending_bytes > 2 * 300



def test_refused_records_move_the_positions_only_when_they_are_next() -> None:
    """A record the shell dead-letters is covered by the snapshot when nothing unseen lies
    before it; past a gap the position stays, so nothing unread is ever skipped."""
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    core.add(*feed("features", "e0", features_of("e0"), 1))  # features offset 0
    core.flush()
    core.skip(("features", 0, 1))  # refused, the next one: covered
    core.skip(("features", 0, 0))  # already covered: no change
    core.skip(("features", 0, 3))  # offset 2 never seen: not covered
    core.skip(("labels", 0, 7))  # the first record of a partition sets its start
    assert core.positions() == {("features", 0): 2, ("labels", 0): 8}
    restored = JoinCore.restore(core.snapshot())  # skip() leaves nothing to flush
    assert restored.positions() == core.positions()
    core.add(*feed("features", "e1", features_of("e1"), 1))  # offset 1: re-read, covered
    assert core.flush().outcomes["redelivered"] == 1

# -- time to live ---------------------------------------------------------------------------


def test_ttl_expires_unlabelled_items_in_stream_time() -> None:
    core, feed = JoinCore(ttl_ms=1_000), Feed()
    core.add(*feed("features", "e1", features_of("e1", 0), 0))
    core.add(*feed("prediction", "e1", prediction_of("e1", 0), 0))
    core.add(*feed("features", "e2", features_of("e2", 1_000), 1_000))
    assert core.flush().outcomes["expired_unlabelled"] == 0  # first_seen + ttl == stream time
    core.add(*feed("features", "e3", features_of("e3", 1_001), 1_001))
    result = core.flush()
    assert result.outcomes["expired_unlabelled"] == 1 and result.rejected == []
    assert result.expired == {"features": 1, "prediction": 1, "label": 0}
    assert core.stats().pending == 2 and core.stats().stream_time_ms == 1_001
    assert core.flush().expired == {"features": 0, "prediction": 0, "label": 0}  # per flush


def test_orphan_labels_become_dead_letters() -> None:
    core, feed = JoinCore(ttl_ms=1_000), Feed()
    lonely, half = label_of("e1", 0), label_of("e2", 0)
    core.add(*feed("label", "e1", lonely, 0, partition=3))
    core.add(*feed("features", "e2", features_of("e2", 0), 0, partition=3))
    core.add(*feed("label", "e2", half, 0, partition=3))
    core.flush()
    core.add(*feed("features", "e9", features_of("e9", 5_000), 5_000))
    result = core.flush()
    assert result.outcomes["orphan_labels"] == 2 and core.stats().pending == 1
    assert result.expired == {"features": 1, "prediction": 0, "label": 2}
    first, second = letters(result)
    assert (first["source_topic"], first["source_partition"], first["source_offset"]) == (
        "labels", 3, 0)
    assert first["value"] == lonely and first["key"] == b"e1" and second["value"] == half
    assert first["error_type"] == "InvalidEventError" and first["processor"] == "joiner"
    assert first["reason"] == "label without features and prediction within TTL 1s"
    assert second["reason"] == "label without prediction within TTL 1s"
    ev.DeadLetter.from_avro(first)
    CODEC.encode("DeadLetter", second)


def test_a_very_late_label_does_not_expire_the_labels_that_are_on_time() -> None:
    """A label backlog read before the predictions: a 30-day chargeback among on-time
    labels must not move stream time and expire the rest (labels never move the clock)."""
    day = 86_400_000
    core, feed = JoinCore(ttl_ms=7 * day), Feed()
    for i in range(5):
        core.add(*feed("features", f"e{i}", features_of(f"e{i}", 1_000 + i), 1_000 + i))
    core.add(*feed("label", "old", label_of("old", 30 * day), 30 * day))  # its event is long gone
    for i in range(5):
        core.add(*feed("label", f"e{i}", label_of(f"e{i}", 60_000 + i), 60_000 + i))
    assert core.flush().outcomes["orphan_labels"] == 0  # nothing expired yet
    for i in range(5):
        core.add(*feed("prediction", f"e{i}", prediction_of(f"e{i}", 1_000 + i), 1_000 + i))
    assert sorted(ids(core.flush())) == [f"e{i}" for i in range(5)]
    assert core.stats().stream_time_ms == 1_004
    core.add(*feed("features", "late", features_of("late", 8 * day), 8 * day))  # a week on
    assert core.flush().outcomes["orphan_labels"] == 1  # the chargeback's event never came


def test_a_record_after_the_ttl_starts_a_new_item() -> None:
    core, feed = JoinCore(ttl_ms=1_000), Feed()
    core.add(*feed("features", "e1", features_of("e1", 0), 0))
    core.flush()
    # no flush between: the expiry must not depend on where batches end
    core.add(*feed("features", "e2", features_of("e2", 2_000), 2_000))
    core.add(*feed("prediction", "e1", prediction_of("e1", 2_000), 2_000))
    core.add(*feed("label", "e1", label_of("e1", 2_000), 2_000))
    result = core.flush()
    assert result.feedback == [] and result.outcomes["expired_unlabelled"] == 1
    assert core.stats().pending == 2


def test_done_entries_expire_after_the_ttl() -> None:
    core, feed = JoinCore(ttl_ms=5_000), Feed()
    core.add_many(triple(feed, "e1", t=0).values())  # completes at stream time 4_000
    assert ids(core.flush()) == ["e1"] and core.stats().done == 1
    core.add(*feed("label", "e1", label_of("e1"), 9_000))
    assert core.flush().outcomes["duplicates"] == 1 and core.stats().done == 1
    core.add(*feed("features", "e2", features_of("e2", 9_001), 9_001))
    core.flush()
    assert core.stats().done == 0  # bounded memory
    core.add(*feed("label", "e1", label_of("e1"), 9_001))  # no longer known: pending again
    assert core.flush().outcomes["duplicates"] == 0 and core.stats().pending == 2


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        JoinCore(ttl_ms=0)


# -- invalid input --------------------------------------------------------------------------


def test_invalid_records_are_dead_lettered_with_their_bytes() -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    good = prediction_of("e1")
    bad = {
        "garbage": feed("features", "e1", b"\x00garbage", 1),
        "wrong schema": feed("features", "e1", label_of("e1"), 1),
        "tombstone": feed("label", "e1", None, 1),
        "truncated": feed("prediction", "e1", good[:-3], 1),
        "trailing": feed("prediction", "e1", good + b"\x00", 1),
        "unknown writer": feed("prediction", "e1", good[:2] + b"\xff" * 8 + good[10:], 1),
        "empty key": feed("label", "", label_of("e1"), 1),
    }
    core.add_many(bad.values())
    result = core.flush()
    assert result.outcomes["invalid"] == len(bad) and core.stats().pending == 0
    by_source = {(d["source_topic"], d["source_offset"]): d for d in letters(result)}
    for record in bad.values():
        letter = by_source[record.source[0], record.source[2]]
        assert letter["value"] == (record.payload or None)
        ev.DeadLetter.from_avro(letter)
    assert by_source["predictions", 2]["error_type"] == "UnknownSchemaError"
    assert "payload is a LabelEvent" in by_source["features", 1]["reason"]


def test_inconsistent_events_are_dead_lettered_at_emission() -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    core.add(*feed("features", "e1", features_of("e1"), 1))
    core.add(*feed("prediction", "e1", prediction_of("e1"), 1))
    core.add(*feed("label", "e1", label_of("e1", model="pricing"), 1))
    core.add(*feed("features", "e2", features_of("other"), 1))
    core.add(*feed("prediction", "e2", prediction_of("e2"), 1))
    core.add(*feed("label", "e2", label_of("e2"), 1))
    result = core.flush()
    assert result.feedback == [] and result.outcomes["invalid"] == 2
    assert [d["source_topic"] for d in letters(result)] == ["labels", "features"]
    core.add(*feed("label", "e1", label_of("e1"), 2))
    assert core.flush().outcomes["duplicates"] == 1  # the event is done, not retried


def test_prediction_layout_is_the_bundled_schema() -> None:
    assert prediction_layout_fingerprint() == SchemaStore.bundled().reader(
        "PredictionEvent").fingerprint, "the prediction fast path would never be used"


def test_predictions_of_another_writer_schema_are_decoded() -> None:
    v1 = json.loads(resources.files("riverops.schemas").joinpath("avro/PredictionEvent.avsc")
                    .read_text("utf-8"))
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "region", "type": "string", "default": "eu"})
    writer = SingleObjectCodec(SchemaStore.bundled().with_reader(v2))
    payload = writer.encode("PredictionEvent", {**CODEC.decode("PredictionEvent",
                                                               prediction_of("e1")), "region": "us"})
    core, feed = JoinCore(ttl_ms=60_000, codec=SingleObjectCodec(
        SchemaStore.bundled().with_writer(v2))), Feed()
    records = triple(feed, "e1")
    core.add_many([records["features"], records["label"], records["prediction"]._replace(
        payload=payload)])
    (record,) = core.flush().feedback
    assert record["predictions"][0]["scores"] == {"True": 0.75, "False": 0.25}


def test_confluent_wire_format_is_joined_without_header_checks() -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from riverops.schemas.codec import ConfluentCodec

    codec = ConfluentCodec(SchemaRegistryClient.new_client({"url": "mock://joiner"}))
    core, feed = JoinCore(ttl_ms=60_000, codec=codec), Feed()
    for kind, record in triple(feed, "e1").items():
        name = {"features": "FeatureEvent", "prediction": "PredictionEvent",
                "label": "LabelEvent"}[kind]
        core.add(*record._replace(payload=codec.encode(name, CODEC.decode(name, record.payload))))
    assert ids(core.flush()) == ["e1"]


# -- snapshots ------------------------------------------------------------------------------


def make_stream(seed: int, events: int = 3_000, ttl_ms: int = 10_000) -> list[JoinInput]:
    """Arrival-ordered records of ``events`` events on two partitions: some without features
    or label, labels up to ~3 TTLs late, records jittered across topics, 5% produced twice."""
    rng = random.Random(seed)
    arrivals: list[tuple[float, Kind, str, bytes, int, int]] = []
    for index in range(events):
        event_id, t0, partition = f"e{index}", index * 10, rng.randrange(2)

        def arrive(kind: Kind, payload: bytes, t: int, delay: float, event_id: str = event_id,
                   partition: int = partition) -> None:
            arrivals.append((t + delay, kind, event_id, payload, t, partition))
            if rng.random() < 0.05:
                again = t + delay + rng.uniform(0, 3_000)
                arrivals.append((again, kind, event_id, payload, t, partition))

        if rng.random() < 0.95:
            arrive("features", features_of(event_id, t0), t0, rng.uniform(0, 300))
        for version, variant in enumerate(rng.sample(VARIANTS, rng.randint(1, 3)), start=1):
            if rng.random() < 0.97:
                arrive("prediction", prediction_of(event_id, t0, version=version, variant=variant),
                       t0, rng.uniform(0, 600))
        if rng.random() < 0.85:
            t = t0 + int(rng.expovariate(1 / (ttl_ms / 2)))
            arrive("label", label_of(event_id, t, label=rng.random() < 0.5), t, rng.uniform(0, 600))
    arrivals.sort(key=lambda a: a[0])  # the record time is event_time / label_time
    feed = Feed()
    return [feed(kind, event_id, payload, t, partition)
            for _, kind, event_id, payload, t, partition in arrivals]


def batches_of(records: list[JoinInput], rng: random.Random) -> list[list[JoinInput]]:
    out, start = [], 0
    while start < len(records):
        size = rng.randint(1, 120)
        out.append(records[start:start + size])
        start += size
    return out


def run(core: JoinCore, batches: list[list[JoinInput]]) -> tuple[list[Any], list[Any]]:
    feedback, dead = [], []
    for batch in batches:
        core.add_many(batch)
        result = core.flush()
        feedback += result.feedback
        dead += refusals(result)
    return feedback, dead


def counters(core: JoinCore) -> dict[str, int]:
    stats = core.stats()
    return {name: getattr(stats, name) for name in (*OUTCOMES, "pending", "pending_bytes", "done")}


def uninterrupted(seed: int, ttl: int) -> tuple[random.Random, list[list[JoinInput]], JoinCore, list[Any], list[Any]]:
    """A stream of ``seed`` in random batches, and one core's uninterrupted run over it: the
    rng (for the cuts), the batches, that core, its feedback and its dead letters."""
    rng = random.Random(seed)
    batches = batches_of(make_stream(seed, ttl_ms=ttl), rng)
    whole = JoinCore(ttl_ms=ttl)
    feedback, dead = run(whole, batches)
    return rng, batches, whole, feedback, dead


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshot_restore_continues_exactly_like_an_uninterrupted_run(seed: int) -> None:
    ttl = 10_000
    rng, batches, whole, expected_feedback, expected_dead = uninterrupted(seed, ttl)
    expected = counters(whole)
    emitted = [r["event_id"] for r in expected_feedback]
    assert len(emitted) == len(set(emitted)) > 1_000  # never twice
    assert all(expected[name] > 0 for name in OUTCOMES if name not in ("invalid", "redelivered"))

    cuts = sorted(rng.sample(range(1, len(batches)), 4))
    core = JoinCore(ttl_ms=ttl)
    feedback, dead, previous, redelivered = [], [], 0, 0
    for cut in [*cuts, len(batches)]:
        out = run(core, batches[previous:cut])
        feedback += out[0]
        dead += out[1]
        if cut == len(batches):
            break
        snapshot = core.snapshot()
        run(core, batches[cut:cut + 3])  # work after the snapshot, lost in a crash
        core = JoinCore.restore(snapshot, ttl_ms=ttl)
        done = [r for batch in batches[:cut] for r in batch]
        again = sorted(rng.sample(range(len(done)), min(40, len(done))))
        batches[cut] = [done[i] for i in again] + batches[cut]  # Kafka re-delivers a few
        redelivered += len(again)
        previous = cut
    assert feedback == expected_feedback and dead == expected_dead
    assert counters(core) == {**expected, "redelivered": expected["redelivered"] + redelivered}


def test_restored_core_gives_the_same_events_whatever_the_batches() -> None:
    records, ttl = make_stream(7, events=2_000), 10_000
    whole = JoinCore(ttl_ms=ttl)
    expected_feedback, expected_dead = run(whole, batches_of(records, random.Random(1)))
    half = len(records) // 2
    core = JoinCore(ttl_ms=ttl)
    feedback, dead = run(core, batches_of(records[:half], random.Random(2)))
    core = JoinCore.restore(core.snapshot(), ttl_ms=ttl)
    more = run(core, batches_of(records[half:], random.Random(3)))
    assert [r["event_id"] for r in feedback + more[0]] == [r["event_id"] for r in expected_feedback]
    assert dead + more[1] == expected_dead
    stable = ("joined", "expired_unlabelled", "orphan_labels", "invalid", "pending", "done")
    assert {n: counters(core)[n] for n in stable} == {n: counters(whole)[n] for n in stable}


def test_snapshot_needs_a_flushed_core() -> None:
    core, feed = JoinCore(), Feed()
    core.add(*feed("features", "e1", features_of("e1"), 1))
    with pytest.raises(RiveropsError, match="flush"):
        core.snapshot()
    core.flush()
    restored = JoinCore.restore(core.snapshot())
    assert restored.stats() == core.stats() and restored.positions() == core.positions()


def test_corrupt_snapshots_raise_a_clear_error() -> None:
    core, feed = JoinCore(ttl_ms=60_000), Feed()
    core.add(*feed("features", "e1", features_of("e1"), 1))
    core.add_many(triple(feed, "e2").values())
    core.flush()
    good = core.snapshot()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    cases = {
        "checksum": bytes(flipped),
        "checksum ": good[:-10],
        "bad magic": b"PK" + good[2:],
        "format version": good[:5] + b"\x09" + good[6:],
        "too short": b"",
    }
    for reason, data in cases.items():
        with pytest.raises(DecodeError, match=reason.strip()):
            JoinCore.restore(data)
