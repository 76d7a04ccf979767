"""A role whose state cannot be restored on assignment (its changelog's broker away) does
not stop the worker: the partitions wait paused, without state, and the loop restores
them later, as after an abort (the fault test's joiner died of a watermark query that
failed inside the rebalance callback)."""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverops.rolespec import Offsets, RoleSpec
from riverops.runtime import Runtime
from riverops.settings import Settings

TOPIC = "riverops.features"


class Consumer:
    """What the rebalance and rewind paths call, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[int, int]]]] = []

    def _record(self, name: str, partitions: list[TopicPartition]) -> None:
        self.calls.append((name, [(tp.partition, tp.offset) for tp in partitions]))

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 100 + tp.partition) for tp in partitions]

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._record("assign", partitions)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._record("pause", partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._record("resume", partitions)

    def seek(self, partition: TopicPartition) -> None:
        self._record("seek", [partition])


class Restoring(RoleSpec):
    """Restores partition by partition, then sets where each starts (as the joiner does);
    the partition in ``failing`` fails."""

    name = "restoring"
    inputs = ("features",)

    def __init__(self) -> None:
        self.state: dict[int, int] = {}
        self.failing: int | None = None

    def assign(self, partitions: list[TopicPartition], committed: Offsets | None) -> None:
        for tp in partitions:
            if tp.partition == self.failing:
                raise KafkaException(KafkaError(KafkaError._DESTROY_BROKER))
            self.state[tp.partition] = 200 + tp.partition
        for tp in partitions:
            tp.offset = self.state[tp.partition]

    def revoke(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.state.pop(tp.partition, None)


class Outbox:
    def flush(self, what: str) -> None:
        pass


def _runtime(role: RoleSpec, consumer: Consumer) -> Runtime:
    runtime = Runtime(role, Settings(), stop=threading.Event(), group_id="g")
    runtime._consumer = consumer
    runtime._outbox = Outbox()  # type: ignore[assignment]
    return runtime


def _partitions() -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in range(3)]


def test_a_restore_that_fails_on_assignment_pauses_the_partitions_and_resumes_them_later() -> None:
    role, consumer = Restoring(), Consumer()
    runtime = _runtime(role, consumer)
    role.failing = 1
    runtime._on_assign(consumer, _partitions())  # does not raise
    assert role.state == {}  # partition 0's restored state dropped too
    assert [name for name, _ in consumer.calls] == ["assign", "pause"]
    assert consumer.calls[0][1] == [(0, -1001), (1, -1001), (2, -1001)]  # nothing read meanwhile
    assert runtime._rewinding is not None and len(runtime._rewinding) == 3
    assert runtime._owned == {(TOPIC, p) for p in range(3)}

    consumer.calls.clear()
    assert not runtime._resume()  # the broker still away: still paused, still no state
    assert role.state == {} and consumer.calls == [] and runtime._rewinding is not None

    role.failing = None
    assert runtime._resume()
    assert role.state == {0: 200, 1: 201, 2: 202}
    assert consumer.calls == [("seek", [(0, 200)]), ("seek", [(1, 201)]), ("seek", [(2, 202)]),
                              ("resume", [(0, 200), (1, 201), (2, 202)])]
    assert runtime._rewinding is None


def test_a_revoke_while_waiting_leaves_no_state_behind() -> None:
    """A partition waiting for its restore holds no state, so a revoke meanwhile (which
    skips the role for it) cannot leave a stale one for a later assignment to reuse."""
    role, consumer = Restoring(), Consumer()
    runtime = _runtime(role, consumer)
    role.failing = 2
    runtime._on_assign(consumer, _partitions())
    assert not runtime._resume()
    assert role.state == {}
    runtime._on_revoke(consumer, _partitions())
    assert role.state == {} and runtime._rewinding == [] and runtime._owned == set()


def test_an_assignment_that_restores_is_unchanged() -> None:
    role, consumer = Restoring(), Consumer()
    runtime = _runtime(role, consumer)
    runtime._on_assign(consumer, _partitions())
    assert consumer.calls == [("assign", [(0, 200), (1, 201), (2, 202)])]
    assert runtime._rewinding is None and role.state == {0: 200, 1: 201, 2: 202}
    assert runtime.committed == {(TOPIC, p): 100 + p for p in range(3)}

