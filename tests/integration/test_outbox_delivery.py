"""At least once, a stateless role's commit does not wait for its outputs: the outbox holds
each batch's offsets until every record sent before them is acknowledged by the broker,
and hands them back oldest first; a record the broker refused stops it, as flush does."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from riverops.kafka.outbox import Outbox
from riverops.schemas.errors import RiveropsError
from riverops.settings import Settings

pytestmark = pytest.mark.timeout(120)

LABEL = {"event_id": "e", "model": "fraud", "label": True, "label_time": datetime(2026, 12, 2, tzinfo=UTC)}


def _topic(settings: Settings) -> str:
    name = f"outbox-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka_config())  # kept until the future is done
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(15)
    return name


def test_offsets_come_back_oldest_first_once_their_records_are_delivered(settings: Settings) -> None:
    outbox = Outbox(settings)
    topic = _topic(settings)
    returned: list[int | None] = []
    try:
        for batch in range(5):
            outbox.send(topic, "LabelEvent", [{**LABEL, "event_id": f"e{batch}-{i}"} for i in range(500)],
                        key="event_id")
            returned += outbox.after_delivery(batch, "labels")
            assert returned == list(range(len(returned)))  # oldest first, none skipped
        deadline = time.monotonic() + 30
        while [r for r in returned if r is not None] != list(range(5)) and time.monotonic() < deadline:
            returned += outbox.after_delivery(None, "labels")  # nothing sent since: None is free
            time.sleep(0.05)
        assert [r for r in returned if r is not None] == [0, 1, 2, 3, 4]
        assert len(outbox.producer) == 0  # all of it acknowledged
    finally:
        outbox.close()


def test_a_refused_record_stops_the_role_before_anything_after_it_is_committed(settings: Settings) -> None:
    outbox = Outbox(settings, **{"message.timeout.ms": 2000})
    try:
        outbox.send(f"{settings.topic_prefix}no-such-topic-{uuid.uuid4().hex[:6]}", "LabelEvent", [LABEL],
                    key="event_id")
        deadline = time.monotonic() + 30
        with pytest.raises(RiveropsError, match="labels not delivered"):
            while time.monotonic() < deadline:
                assert outbox.after_delivery("offsets", "labels") == []
                time.sleep(0.1)
    finally:
        outbox.failures.clear()
        outbox.producer.purge()
        outbox.close()


def test_a_burst_larger_than_the_local_queue_waits_for_room_instead_of_failing(settings: Settings) -> None:
    """librdkafka raises BufferError when its local queue is full (100,000 records by
    default: a joiner's transaction with more changelog records than that hit it)."""
    outbox = Outbox(settings, **{"queue.buffering.max.messages": 50})
    topic = _topic(settings)
    try:
        outbox.send(topic, "LabelEvent", [{**LABEL, "event_id": f"e{i}"} for i in range(2_000)], key="event_id")
        outbox.flush("labels")
        assert outbox.sent == 2_000 and len(outbox.producer) == 0
    finally:
        outbox.close()
