"""The joiner's changelog restore reads to the log's end, past a transaction still open.

A read_committed consumer's watermark query answers the last stable offset: a restore
that stopped there would leave out the changes of a transaction committed while it ran
(or committed but not yet marked), so the new owner's state would lag the committed
offsets and the events in between would be joined twice. Here the changelog's second
commit is still open when the restore starts and is committed 3 s later: the restored
state must be the second one, into a spilling core as into one in memory.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from riverops.kafka.clients import make_admin, make_producer
from riverops.roles.joiner import JoinCore
from riverops.roles.joiner.changelog import encode_changes, encode_header, restore
from riverops.settings import Settings

from ..conftest import ENGINE
from ..unit.test_joiner import make_stream, run

pytestmark = pytest.mark.skipif(ENGINE != "kafka", reason="transactions: Apache Kafka only")


def _changelog(settings: Settings) -> str:
    name = f"{settings.topic_prefix}restore-{uuid.uuid4().hex[:6]}.join-state"
    admin = make_admin(settings)
    config = {"cleanup.policy": "compact"}
    admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(15)
    return name


def _records(core: JoinCore) -> list[tuple[int, bytes, bytes | None]]:
    return [*encode_changes(0, core.changes()), encode_header(0, core.state(whole=False))]


@pytest.mark.parametrize("memory_events", [0, 5])
def test_a_restore_waits_out_an_open_transaction(settings: Settings, tmp_path: Path, memory_events: int) -> None:
    topic = _changelog(settings)
    records = make_stream(11, events=300)
    core = JoinCore(ttl_ms=10_000)
    producer = make_producer(settings, **{"transactional.id": f"restore-{uuid.uuid4().hex[:6]}"})
    producer.init_transactions(30)

    def commit(batch: list[tuple[int, bytes, bytes | None]]) -> None:
        for partition, key, value in batch:
            producer.produce(topic, key=key, value=value, partition=partition)

    run(core, [records[:400]])
    producer.begin_transaction()
    commit(_records(core))
    producer.commit_transaction(30)
    first = core.positions()
    run(core, [records[400:]])
    producer.begin_transaction()
    commit(_records(core))
    producer.flush(30)  # in the log, not committed: beyond the last stable offset
    assert core.positions() != first
    committer = threading.Timer(3.0, producer.commit_transaction, args=(30,))
    committer.start()
    try:
        spill = {"spill_to": tmp_path / "p0.sqlite", "memory_events": memory_events} if memory_events else {}
        into = JoinCore(ttl_ms=10_000, **spill)  # type: ignore[arg-type]
        started = time.monotonic()
        restored = restore(settings, topic, 0, into, timeout=60)
        waited = time.monotonic() - started
    finally:
        committer.join()
    print(f"\nrestore took {waited:.1f} s, {restored.records} records")
    assert restored.found
    assert into.positions() == core.positions()  # the second commit's state, not the first's
    assert dataclasses.replace(into.stats(), pending_on_disk=0, done_on_disk=0) == core.stats()
    assert (into.stats().pending_on_disk > 0) == bool(memory_events)  # a restore goes to the file
    assert dict(into.state(whole=True).pending) == dict(core.state(whole=True).pending)
    into.close()
