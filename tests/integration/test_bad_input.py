"""12k bad records mixed into 20k good events, through scorer, joiner and monitor on the
real broker: every bad record is dead-lettered with its reason by the processors that
must, every good record is processed, no worker stops, and the counts add up exactly."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from riverops.kafka.clients import make_consumer, make_producer
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.roles.scorer import ScorerStats, run_scorer
from riverops.schemas.errors import DecodeError
from riverops.sections import DataDriftSettings, MonitorSettings
from riverops.settings import Settings

from . import badinput
from .champion import register_champion
from .conftest import read_topic

pytestmark = [pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(240)]


def produce(settings: Settings, records: list[badinput.Record]) -> dict[tuple[str, int], int]:
    """Produce the records in order; how many landed on each (role, partition)."""
    catalogue = TopicCatalogue.from_settings(settings)
    producer = make_producer(settings)
    landed: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            landed[(message.topic(), message.partition())] += 1

    for record in records:
        headers = list(record.headers or ())
        if record.role == "predictions":
            headers.append((PREDICTIONS_HEADER, b"1"))
        while True:
            try:
                producer.produce(catalogue.name(record.role), key=record.key, value=record.value,  # type: ignore[arg-type]
                                 timestamp=record.timestamp_ms, headers=headers or None,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0 and not failures, failures[:3]
    return dict(landed)


def read_good(settings: Settings, role: str, schema: str, expected: int) -> list[dict[str, Any]]:
    """The decodable records of a topic into which the corpus also put garbage."""
    codec = settings.codec()
    consumer = make_consumer(settings, f"read-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([TopicCatalogue.from_settings(settings).name(role)])  # type: ignore[arg-type]
    out: list[dict[str, Any]] = []
    quiet_until = time.monotonic() + 60
    try:
        while time.monotonic() < quiet_until:
            messages = [m for m in consumer.consume(1000, 0.5) if m.error() is None]
            out += [r for r in codec.decode_many(schema, [m.value() for m in messages])
                    if not isinstance(r, DecodeError)]
            if len(out) >= expected and not messages:
                break
    finally:
        consumer.close()
    return out


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_bad_records_are_dead_lettered_and_good_ones_all_processed(
    loop_settings: Settings, start_worker: Any
) -> None:
    settings = Settings(**{**loop_settings.model_dump(), "joiner": {**loop_settings.joiner.model_dump(), "label_ttl_seconds": 3600.0}})
    corpus = badinput.build()
    tick_records, tick_ids = badinput.ticks()
    register_champion(settings)
    scorer = start_worker(run_scorer, settings, ScorerStats())
    joiner = start_worker(run_joiner, settings, JoinerStats())
    # no task given: the monitor reads it from the registry, whatever label comes first
    monitoring = settings.model_copy(update={"monitor": MonitorSettings(
        emit_seconds=0.5, window_size=10**6, time_window=10**9, data_drift=DataDriftSettings(enabled=False))})
    monitor = start_worker(run_monitor, monitoring, MonitorStats())

    produce(settings, corpus.records)
    good_in = sum(corpus.good_copies.values())
    # every record the joiner reads, repeated labels included: they make no feedback, and
    # one read after the ticks below would find its event's done entry expired
    joiner_inputs = good_in + sum(r.role in ("features", "labels", "predictions") for r in corpus.records)
    wait_for(lambda: scorer.stats.predictions >= good_in and joiner.stats.feedback >= len(corpus.joined)
             and joiner.stats.consumed >= joiner_inputs, 150)
    assert joiner.stats.consumed == joiner_inputs, (joiner.stats.consumed, joiner_inputs)
    # then move every partition's stream time past the TTL: what never joined expires. The
    # ticks' labels go once their features and predictions are read: labels do not move the
    # joiner's clock, so a label read before its features, an hour of stream time behind,
    # would itself expire (docs/reliability.md)
    tick_features = [r for r in tick_records if r.role != "labels"]
    landed = produce(settings, tick_features)
    features = TopicCatalogue.from_settings(settings).name("features")
    assert {p for (t, p) in landed if t == features} == set(range(settings.partitions))
    wait_for(lambda: joiner.stats.consumed >= joiner_inputs + 2 * len(tick_features), 60)
    produce(settings, [r for r in tick_records if r.role == "labels"])
    joined = corpus.joined | set(tick_ids)
    expected_letters = corpus.expected_dead_letters()
    # the monitor handles every joined event's feedback; the undecodable feedback records
    # are only dead letters (awaited below)
    wait_for(lambda: joiner.stats.feedback >= len(joined) and monitor.stats.feedback >= len(joined), 60)

    letters = read_topic(settings, "deadletter", "DeadLetter", expected=sum(expected_letters.values()),
                         timeout=60, settle=2)
    predictions = read_good(settings, "predictions", "PredictionEvent", good_in + len(tick_ids))
    feedback = read_good(settings, "feedback", "FeedbackEvent", len(joined))
    for running in (scorer, joiner, monitor):
        assert running.thread.is_alive() and not running.errors, f"{running.name} stopped: {running.errors}"

    # every bad record: dead-lettered by exactly the processors that must, with its reason
    codec = settings.codec()
    got: Counter[tuple[str, str, str]] = Counter()
    for letter in letters:
        key = (letter["key"] or b"").decode(errors="replace")
        if letter["processor"] == "monitor" and letter["error_type"] != "DecodeError":
            key = codec.decode("FeedbackEvent", letter["value"])["event_id"]
        category = corpus.category(key)
        got[(category, letter["processor"], letter["error_type"])] += 1
        _count, role, expected = badinput.EXPECTED.get(category, (0, "?", ()))
        reasons = [r for p, e, r in expected if (p, e) == (letter["processor"], letter["error_type"])]
        assert reasons and re.search(reasons[0], letter["reason"]), (category, letter["reason"])
        sent = corpus.sent.get((role, key))
        if sent is not None and letter["processor"] != "monitor":  # the raw record, maybe cut
            assert sent.startswith(letter["value"] or b""), category
    assert got == expected_letters, (got - expected_letters, expected_letters - got)

    # every good record: one prediction per feature record sent (duplicates are re-scored)
    assert Counter(p["event_id"] for p in predictions) == corpus.good_copies + Counter(tick_ids)
    assert {p["variant"] for p in predictions} == {"champion"}
    # one feedback per joined event, none for the rest
    assert Counter(f["event_id"] for f in feedback) == Counter(joined)
    # the joiner's outcomes add up
    outcomes = Counter[str]()
    for stats in (joiner.stats.cores or {}).values():
        outcomes.update({name: getattr(stats, name) for name in (
            "joined", "duplicates", "late_predictions", "redelivered", "expired_unlabelled",
            "orphan_labels", "invalid")})
    header_valid = sum(corpus.bad[name] for name in badinput.HEADER_VALID)
    # records over the size limits are refused by the runtime before the core sees them
    size_limited = sum(corpus.bad[name] for name in ("f_oversized", "f_huge_random", "f_long_id"))
    joiner_invalid = sum(n for (_c, processor, _e), n in expected_letters.items()
                         if processor == "joiner") - corpus.bad["l_unknown_event"] - corpus.bad["l_truncated"]
    joiner_invalid -= size_limited
    assert outcomes["joined"] == len(joined)
    assert outcomes["duplicates"] + outcomes["late_predictions"] == (
        2 * corpus.duplicate_features + corpus.duplicate_labels)
    assert outcomes["redelivered"] == 0
    assert outcomes["expired_unlabelled"] == corpus.unlabelled + header_valid
    assert outcomes["orphan_labels"] == corpus.bad["l_unknown_event"] + corpus.bad["l_truncated"]
    assert outcomes["invalid"] == joiner_invalid
    # the monitor: one sample per well-labelled event, bad labels dead-lettered
    status = {(s.model, s.version, s.variant): s for s in monitor.stats.status}
    assert set(status) == {("fraud", 1, "champion")} and status[("fraud", 1, "champion")].task == "binary"
    assert status[("fraud", 1, "champion")].samples == len(corpus.labelled) + len(tick_ids)
    assert monitor.stats.duplicates == 0
    print(f"\nbad records {sum(corpus.bad.values())} -> dead letters {len(letters)}; good feature "
          f"records {good_in} -> predictions {len(predictions) - len(tick_ids)}; joined {len(joined)}; "
          f"joiner outcomes {dict(outcomes)}")
