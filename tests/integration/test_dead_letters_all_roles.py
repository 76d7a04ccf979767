"""Every role dead-letters an undecodable record of every topic it reads, with the reason.

One record of random bytes goes to each input topic; every role (``worker all`` plus the
online role) runs on the real broker, and the dead-letter topic must hold one letter per
(role, input topic) naming the decode failure. Before the worker runtime, the retrainer
logged such records and dropped them.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

from confluent_kafka import Producer

from riverops.kafka.topics import TopicCatalogue
from riverops.settings import Settings
from riverops.worker import ROLES, run_roles

from .conftest import read_topic

READS = {
    "scorer": ("features",),
    "joiner": ("features", "predictions", "labels"),
    "online": ("features", "labels"),
    "monitor": ("feedback",),
    "learner": ("feedback",),
    "retrainer": ("feedback", "drift", "metrics", "retrain"),
}
"""What each role consumes (the lag role reads no topic)."""


def test_every_role_dead_letters_what_it_cannot_decode(loop_settings: Settings) -> None:
    catalogue = TopicCatalogue.from_settings(loop_settings)
    producer = Producer(loop_settings.kafka_config())
    inputs = sorted({topic for topics in READS.values() for topic in topics})
    for topic in inputs:  # the same key on every topic: one partition per topic for the joiner
        producer.produce(catalogue.name(topic), key=b"bad-1", value=b"\x00\x01 not avro at all")  # type: ignore[arg-type]
    assert producer.flush(15) == 0

    expected = {(role, catalogue.name(topic)) for role, topics in READS.items() for topic in topics}
    stop = threading.Event()
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(run_roles(
        loop_settings, list(ROLES), stop=stop, serve_metrics=False,
        group_prefix=f"riverops-dl-{uuid.uuid4().hex[:6]}")))
    worker.start()
    try:
        letters = read_topic(loop_settings, "deadletter", "DeadLetter", expected=len(expected),
                             timeout=120, settle=3.0)
    finally:
        stop.set()
        worker.join(60)
    assert codes == [0], "a role failed instead of dead-lettering"

    seen = Counter((letter["processor"], letter["source_topic"]) for letter in letters)
    missing = expected - set(seen)
    assert not missing, f"no dead letter from {sorted(missing)}; got {sorted(seen)}"
    for letter in letters:
        assert letter["error_type"] in ("DecodeError", "UnknownSchemaError"), letter
        assert "Avro" in letter["reason"], letter["reason"]
        assert letter["value"] == b"\x00\x01 not avro at all"
        assert letter["key"] == b"bad-1"
    assert all(n == 1 for n in seen.values()), f"repeated dead letters: {seen}"
