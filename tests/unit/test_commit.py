"""A commit the group no longer accepts (session lost while the broker was frozen, a
rebalance) is skipped with a warning, not raised: the worker keeps running and the
records are read again (at-least-once). Other commit errors still stop the worker.

The consumer here is a one-method stand-in raising librdkafka's own error objects; the
real path is exercised by tests/integration/test_broker_freeze.py."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverops.kafka.clients import commit


class _Refusing:
    def __init__(self, code: int) -> None:
        self.code = code
        self.calls = 0

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.calls += 1
        raise KafkaException(KafkaError(self.code))


@pytest.mark.parametrize("code", [KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
                                  KafkaError.REBALANCE_IN_PROGRESS, KafkaError._WAIT_COORD])
def test_a_group_that_moved_on_skips_the_commit(code: int, caplog: pytest.LogCaptureFixture) -> None:
    consumer = _Refusing(code)
    assert commit(consumer, [TopicPartition("t", 0, 5)]) is False  # type: ignore[arg-type]
    assert consumer.calls == 1 and "will be read again" in caplog.text


def test_other_commit_errors_still_raise() -> None:
    with pytest.raises(KafkaException):
        commit(_Refusing(KafkaError.GROUP_AUTHORIZATION_FAILED), [TopicPartition("t", 0, 5)])  # type: ignore[arg-type]


def test_nothing_to_commit_is_not_a_call() -> None:
    consumer = _Refusing(KafkaError.UNKNOWN_MEMBER_ID)
    assert commit(consumer, []) is True and consumer.calls == 0  # type: ignore[arg-type]
