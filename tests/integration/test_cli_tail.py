"""`riverops tail` on the real broker, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from riverops.kafka.clients import make_producer
from riverops.kafka.producer import EventProducer
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.settings import Settings

pytestmark = pytest.mark.tansu

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _tail(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from riverops.cli.main import main; main()",
         "-b", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix, "tail", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )


def _lines(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, (out, err)
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def topics(settings: Settings) -> Settings:
    create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
    return settings


def _send(settings: Settings, ids: list[str]) -> None:
    with EventProducer(settings) as producer:
        for i, event_id in enumerate(ids):
            producer.send_features(event_id=event_id, model="fraud", entity_id=f"card-{i}",
                                   features={"amount": 10.0 + i, "country": "fr", "vip": i % 2 == 0,
                                             "missing": None},
                                   event_time=T0)


def test_tail_prints_decoded_records_as_json_lines(topics: Settings) -> None:
    _send(topics, [f"e{i}" for i in range(5)])
    lines = _lines(_tail(topics, "features", "--from-beginning", "--max", "3"))
    assert len(lines) == 3
    for line in lines:
        assert line["topic"] == f"{topics.topic_prefix}features"
        value = line["value"]
        assert line["key"] == value["event_id"] and value["event_id"] in {f"e{i}" for i in range(5)}
        assert value["model"] == "fraud" and value["features"]["country"] == "fr"
        assert value["event_time"] == T0.isoformat() and line["timestamp"] == T0.isoformat()
        assert "error" not in line
    # group-less: its throwaway group never joined nor committed, so the broker has no such group
    listed = AdminClient(topics.kafka_config()).list_consumer_groups(request_timeout=30).result()
    assert not [g.group_id for g in listed.valid if g.group_id.startswith("riverops-tail-")]


def test_an_undecodable_record_is_a_line_with_an_error(topics: Settings) -> None:
    _send(topics, ["good"])
    producer = make_producer(topics)
    producer.produce(f"{topics.topic_prefix}features", key=b"bad", value=b"\x00not avro", partition=0)
    assert producer.flush(30) == 0
    lines = _lines(_tail(topics, f"{topics.topic_prefix}features", "--from-beginning", "--timeout", "3"))
    assert len(lines) == 2  # --timeout: stops once idle
    bad = next(line for line in lines if line["key"] == "bad")
    assert "error" in bad and "value" not in bad
    assert bad["raw"] == "\x00not avro"  # bytes as Avro's JSON encoding writes them
    good = next(line for line in lines if line["key"] == "good")
    assert good["value"]["event_id"] == "good"


@pytest.mark.skipif(os.environ.get("RIVEROPS_TEST_BROKER") == "tansu",
                    reason="Tansu answers ListOffsets(latest) with the start of the last batch, so "
                           "OFFSET_END re-reads it (docs/architecture.md: never OFFSET_END on Tansu)")
def test_without_from_beginning_only_new_records_are_printed(topics: Settings) -> None:
    _send(topics, ["old-1", "old-2"])
    process = _tail(topics, "features", "--max", "1", "--timeout", "60")
    sent = 0
    try:
        # the tail starts at the end it finds: keep sending until it has printed one
        while process.poll() is None and sent < 100:
            _send(topics, [f"new-{sent}"])
            sent += 1
            time.sleep(0.5)
    finally:
        lines = _lines(process)
    assert len(lines) == 1 and lines[0]["value"]["event_id"].startswith("new-"), lines
