"""A joiner checkpoint left from another cluster (same topic names, same state directory) is
ignored, instead of seeking past the new topics' data and joining nothing, silently.
(At least once: under exactly once the state is the changelog topic, on the cluster itself.)"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka.admin import AdminClient

from riverops.kafka.clients import make_producer
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue, create_topics
from riverops.roles.joiner import JoinerStats, run_joiner
from riverops.schemas.codec import SingleObjectCodec
from riverops.settings import Settings

from ..conftest import start_broker, stop_broker
from .conftest import read_topic

GROUP = "riverops-joiner-stale"


def _produce(settings: Settings, count: int) -> None:
    codec, catalogue, producer = SingleObjectCodec(), TopicCatalogue.from_settings(settings), make_producer(settings)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(count):
        eid, when = f"e{i}", t0 + timedelta(milliseconds=10 * i)
        ms = int(when.timestamp() * 1000)
        producer.produce(catalogue.name("features"), key=eid, timestamp=ms, value=codec.encode(
            "FeatureEvent", {"event_id": eid, "model": "fraud", "entity_id": "c", "event_time": when,
                             "features": {"x": float(i)}}))
        producer.produce(catalogue.name("predictions"), key=eid, timestamp=ms, headers=[(PREDICTIONS_HEADER, b"1")],
                         value=codec.encode("PredictionEvent", {
                             "event_id": eid, "model": "fraud", "version": 1, "variant": "champion",
                             "prediction": True, "scores": {"True": 0.9, "False": 0.1}, "latency": 0.001,
                             "event_time": when, "predicted_at": when}))
        producer.produce(catalogue.name("labels"), key=eid, timestamp=ms, value=codec.encode(
            "LabelEvent", {"event_id": eid, "model": "fraud", "label": True, "label_time": when}))
    assert producer.flush(30) == 0


def _run_on_a_new_broker(state: Path, count: int, broker_dir: Path) -> tuple[JoinerStats, int]:
    broker = start_broker(broker_dir)
    try:
        settings = Settings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="same.", partitions=1,
                            state_dir=state, joiner={"checkpoint_seconds": 0.5}, session_timeout_ms=6000,
                            processing_guarantee="at_least_once")  # local checkpoints are that mode's state
        create_topics(AdminClient(settings.kafka_config()), TopicCatalogue.from_settings(settings))
        stats, stop = JoinerStats(), threading.Event()
        thread = threading.Thread(target=run_joiner, args=(settings,), daemon=True,
                                  kwargs={"stop": stop, "stats": stats, "group_id": GROUP})
        thread.start()
        try:
            _produce(settings, count)
            feedback = read_topic(settings, "feedback", "FeedbackEvent", expected=count, timeout=40)
            time.sleep(1.5)  # a checkpoint after the last batch
        finally:
            stop.set()
            thread.join(30)
        return stats, len(feedback)
    finally:
        stop_broker(broker)


def test_a_checkpoint_from_another_cluster_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, joined = _run_on_a_new_broker(state, 500, tmp_path / "first")
    assert joined == 500 and first.checkpoints > 0 and first.ignored_checkpoints == 0
    assert list(state.glob("*/partition-0.snapshot"))
    second, joined = _run_on_a_new_broker(state, 300, tmp_path / "second")  # same names, same state, new data
    assert second.ignored_checkpoints == 1
    assert joined == 300
