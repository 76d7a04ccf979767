"""kill -9 of the joiner mid-stream, then a restart: nothing joined is lost or counted twice,
under either guarantee (both restore the state from the changelog: at least once, the
changes are flushed after the feedback and before the offsets; exactly once, they are in
the transaction)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from riverops.kafka.clients import make_producer
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue
from riverops.roles.monitor import MonitorCore
from riverops.schemas.codec import SingleObjectCodec
from riverops.settings import Settings

from .conftest import read_topic

N = 12_000
pytestmark = [pytest.mark.faults, pytest.mark.serial]


def _joiner(settings: Settings, group_prefix: str, log: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RIVEROPS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "RIVEROPS_TOPIC_PREFIX": settings.topic_prefix,
        "RIVEROPS_PARTITIONS": str(settings.partitions),
        "RIVEROPS_STATE_DIR": str(settings.state_dir),
        "RIVEROPS_JOINER__CHECKPOINT_SECONDS": "0.5",
        "RIVEROPS_SESSION_TIMEOUT_MS": "6000",
        "RIVEROPS_BATCH_SIZE": "500",
        "RIVEROPS_PROCESSING_GUARANTEE": settings.processing_guarantee,
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from riverops.cli.main import main; main()", "worker", "joiner",
         "--no-metrics", "--group-prefix", group_prefix],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
    )


def _stream(settings: Settings, labelled: set[str]) -> None:
    """Features, a prediction and (mostly) a label per event, shuffled in small windows."""
    codec, catalogue = SingleObjectCodec(), TopicCatalogue.from_settings(settings)
    producer = make_producer(settings)
    rng = random.Random(11)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    window: list[tuple[str, str, bytes, int, list[tuple[str, bytes]] | None]] = []
    for i in range(N):
        eid, when = f"e{i}", t0 + timedelta(milliseconds=10 * i)
        ms = int(when.timestamp() * 1000)
        window.append(("features", eid, codec.encode("FeatureEvent", {
            "event_id": eid, "model": "fraud", "entity_id": "c", "event_time": when,
            "features": {"amount": float(i % 97), "hour": float(i % 24)}}), ms, None))
        window.append(("predictions", eid, codec.encode("PredictionEvent", {
            "event_id": eid, "model": "fraud", "version": 1, "variant": "champion",
            "prediction": i % 3 == 0, "scores": {"True": (i % 10) / 10, "False": 1 - (i % 10) / 10},
            "latency": 0.001, "event_time": when, "predicted_at": when}), ms,
            [(PREDICTIONS_HEADER, b"1")]))
        if eid in labelled:
            window.append(("labels", eid, codec.encode("LabelEvent", {
                "event_id": eid, "model": "fraud", "label": i % 2 == 0, "label_time": when}), ms, None))
        if len(window) >= 300 or i == N - 1:
            rng.shuffle(window)
            for role, key, value, ts, headers in window:
                producer.produce(catalogue.name(role), key=key, value=value, timestamp=ts,  # type: ignore[arg-type]
                                 headers=headers)
            window.clear()
            producer.poll(0)
            time.sleep(0.02)
    assert producer.flush(30) == 0


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_kill_9_of_the_joiner_loses_and_double_counts_nothing(loop_settings: Settings, tmp_path, guarantee: str) -> None:  # type: ignore[no-untyped-def]
    if guarantee == "exactly_once" and loop_settings.processing_guarantee != "exactly_once":
        pytest.skip("the embedded broker has no transactions")
    settings = loop_settings.model_copy(update={"processing_guarantee": guarantee})
    labelled = {f"e{i}" for i in range(N) if i % 10 != 3}
    group_prefix = f"riverops-crash-{uuid.uuid4().hex[:6]}"
    log = str(tmp_path / "joiner.log")
    first = _joiner(settings, group_prefix, log)
    sender = threading.Thread(target=_stream, args=(settings, labelled))
    sender.start()
    # kill -9 once a good part of the stream was joined
    partial = read_topic(settings, "feedback", "FeedbackEvent", expected=N // 3, timeout=120, settle=0)
    assert len(partial) >= N // 3, open(log).read()[-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = _joiner(settings, group_prefix, log)
    sender.join()
    try:
        # every event joined (then 3 s more for repeats still on their way)
        feedback = read_topic(settings, "feedback", "FeedbackEvent", expected=len(labelled),
                              timeout=90, settle=3)
        distinct = {f["event_id"] for f in feedback}
        deadline = time.monotonic() + 60
        while distinct != labelled and time.monotonic() < deadline:
            feedback = read_topic(settings, "feedback", "FeedbackEvent", expected=len(labelled),
                                  timeout=5, settle=1)
            distinct = {f["event_id"] for f in feedback}
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert second.returncode == 0, open(log).read()[-3000:]
    assert distinct == labelled, f"missing {len(labelled - distinct)}, extra {len(distinct - labelled)}"
    # every copy of an event's feedback is the same record
    by_event: dict[str, dict[str, object]] = {}
    for record in feedback:
        assert by_event.setdefault(record["event_id"], record) == record
    if settings.processing_guarantee == "exactly_once":
        assert len(feedback) == len(labelled), f"{len(feedback) - len(labelled)} repeated under exactly once"
    # the monitor's dedupe turns at-least-once feedback into exact counts
    monitor = MonitorCore(window_size=10**6, data_drift=None)
    monitor.update(feedback)
    (status,) = monitor.status()
    assert status.samples == len(labelled)
    print(f"feedback records {len(feedback)} for {len(labelled)} events "
          f"({len(feedback) - len(labelled)} repeated after the crash)")
