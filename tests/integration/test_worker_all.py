"""``riverops worker all`` as a real process does what the demo's embedded run does.

The demo runs the roles of ``worker all`` (every role but online) as threads of its own
process (``run_roles``); an operator runs ``riverops worker all`` with RIVEROPS_* settings
and a broker given by KAFKA_BOOTSTRAP_SERVERS. Here both run side by side on the same card stream (each on its
own topics and consumer groups, with the same champion), and the process must give the
same answer: a champion prediction for every feature event with the same scores, a
feedback event for every labelled one and none for the others, rolling metrics over all
of them, /metrics that count what happened, and a clean exit on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from riverops.cli.status import read_to_end
from riverops.demo.cardgen import CardStream, merged_events
from riverops.kafka.producer import EventProducer
from riverops.kafka.registry_topic import publish_records
from riverops.kafka.tansu import free_port
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.settings import Settings
from riverops.worker import ALL_ROLES, run_roles

from .test_metrics_endpoint import _scrape

N = 1_500
SIGNING_KEY = "test-signing-key"


def _wait_for(what: str, condition: Callable[[], bool], *, timeout: float,
              alive: Callable[[], bool] = lambda: True, log: Path | None = None) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` (and the worker's log) if it
    does not within ``timeout`` s, a bound against hanging, not a performance goal."""
    deadline = time.monotonic() + timeout
    while not condition():
        tail = log.read_text()[-3000:] if log is not None else ""
        assert alive(), f"the worker died while waiting for {what}\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{tail}"
        time.sleep(0.5)


def _register_champion(settings: Settings) -> None:
    """The demo's first champion: logreg trained on a warm-up stream, signed, published."""
    model = get_spec("logreg").build(seed=42)
    warm = list(CardStream(events=2_000, seed=1042, id_prefix="warm"))
    learn_in_order(model, [tx.features for tx in warm], [tx.label for tx in warm])
    records = register_trained(settings, Registry(), "fraud", model, spec_name="logreg",
                               stage="champion", by="test", reason="warm-up", seed=42,
                               samples=len(warm))
    publish_records(settings, records)


def _produce(settings: Settings, unlabelled_every: int) -> tuple[set[str], set[str]]:
    """Replay the card stream as the demo does, withholding every n-th label.

    Returns (every event id, the labelled ones).
    """
    stream = CardStream(events=N, seed=7, events_per_second=1_000,
                        start=datetime(2026, 11, 1, tzinfo=UTC))
    ids, labelled = set(), set()
    with EventProducer(settings) as producer:
        for kind, record in merged_events(stream):
            if kind == "features":
                producer.send_features(**record)
                ids.add(record["event_id"])
            elif int(record["event_id"].removeprefix("tx")) % unlabelled_every:
                producer.send_label(**record)
                labelled.add(record["event_id"])
    return ids, labelled


def _riverops() -> str:
    """The ``riverops`` script of the environment running the tests (.venv/bin in CI)."""
    script = Path(sys.executable).parent / "riverops"
    assert script.exists(), f"{script} missing: pip install -e . first"
    return str(script)


@pytest.fixture
def embedded_settings(loop_settings: Settings) -> Settings:
    """Topics of their own for the demo-style run, with the same champion."""
    scoped = Settings(**{**loop_settings.model_dump(), "signing_key": SIGNING_KEY,
                         "topic_prefix": f"{loop_settings.topic_prefix}embedded.",
                         "state_dir": loop_settings.state_dir / "embedded"})
    create_topics(AdminClient(scoped.kafka_config()), TopicCatalogue.from_settings(scoped))
    return scoped


@pytest.fixture
def worker_process(loop_settings: Settings, bootstrap_servers: str,
                   tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``riverops worker all`` on the loop topics, configured only through its environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RIVEROPS_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "RIVEROPS_TOPIC_PREFIX": loop_settings.topic_prefix,
        "RIVEROPS_PARTITIONS": str(loop_settings.partitions),
        "RIVEROPS_SESSION_TIMEOUT_MS": str(loop_settings.session_timeout_ms),
        "RIVEROPS_SIGNING_KEY": SIGNING_KEY,
        "RIVEROPS_ARTIFACT_DIR": str(loop_settings.artifact_dir),
        "RIVEROPS_STATE_DIR": str(loop_settings.state_dir),
        "RIVEROPS_METRICS_PORT": str(port),
    })
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_riverops(), "worker", "all", "--group-prefix", f"riverops-p{uuid.uuid4().hex[:8]}"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def _metric(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
            **labels: str) -> float:
    return sum(v for got, v in samples.get(name, []) if labels.items() <= got.items())


def _champion(settings: Settings) -> dict[str, tuple[int, Any, dict[str, float]]]:
    predictions = read_to_end(settings, "predictions", "PredictionEvent")
    return {p["event_id"]: (p["version"], p["prediction"], p["scores"])
            for p in predictions if p["variant"] == "champion"}


def _final_samples(settings: Settings) -> int:
    """The champion's labelled outcomes in the monitor's latest count-window record."""
    records = [m for m in read_to_end(settings, "metrics", "MetricsEvent")
               if m["variant"] == "champion" and m["window_kind"] == "count"]
    return max((m["samples"] for m in records), default=0)


@pytest.mark.serial  # every role in one process: its timings suffer most beside another test
def test_worker_all_process_matches_the_embedded_run(
    loop_settings: Settings, embedded_settings: Settings,
    worker_process: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log = worker_process
    settings = Settings(**{**loop_settings.model_dump(), "signing_key": SIGNING_KEY})
    for scoped in (settings, embedded_settings):
        _register_champion(scoped)

    # the demo's way: the roles of `worker all` as threads of this process
    stop, registry, exit_code = threading.Event(), CollectorRegistry(), []
    embedded = threading.Thread(target=lambda: exit_code.append(run_roles(
        embedded_settings, list(ALL_ROLES), stop=stop, registry=registry,
        serve_metrics=False, group_prefix=f"riverops-e{uuid.uuid4().hex[:8]}")))
    embedded.start()
    try:
        ids, labelled = _produce(settings, unlabelled_every=7)
        assert _produce(embedded_settings, unlabelled_every=7) == (ids, labelled)
        assert 0 < len(labelled) < len(ids)
        alive = lambda: process.poll() is None  # noqa: E731

        def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
            try:
                return _scrape(port)
            except (urllib.error.URLError, ConnectionError):
                return {}  # not serving yet

        feedback_topic = f"{settings.topic_prefix}feedback"
        metrics_topic = f"{settings.topic_prefix}metrics"
        _wait_for("the process to score and join the stream", lambda: _metric(
            scrape(), "riverops_events_in_total", role="monitor", topic=feedback_topic
        ) >= len(labelled), timeout=90, alive=alive, log=log)
        emitted = _metric(scrape(), "riverops_events_out_total", role="monitor", topic=metrics_topic)
        # two more emissions (every 2 s): the last one reflects every feedback event
        _wait_for("the process's final rolling metrics", lambda: _metric(
            scrape(), "riverops_events_out_total", role="monitor", topic=metrics_topic
        ) > emitted + 1 and _final_samples(settings) > 0, timeout=90, alive=alive, log=log)
        embedded_feedback = f"{embedded_settings.topic_prefix}feedback"
        _wait_for("the embedded run to score and join the stream", lambda: (registry.get_sample_value(
            "riverops_events_in_total", {"role": "monitor", "topic": embedded_feedback}) or 0
        ) >= len(labelled), timeout=60)
        _wait_for("the embedded run's final rolling metrics",
                  lambda: _final_samples(embedded_settings) == len(labelled), timeout=90)
        samples = scrape()
    finally:
        stop.set()
        embedded.join(60)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        returncode = process.wait(60)
    output = log.read_text()
    assert returncode == 0, output[-3000:]
    assert exit_code == [0]
    assert "CRITICAL" not in output

    # a champion prediction for every feature event, the same in both runs
    served, expected = _champion(settings), _champion(embedded_settings)
    assert set(served) == set(expected) == ids
    for event_id, (version, prediction, scores) in expected.items():
        assert served[event_id][:2] == (version, prediction), event_id
        assert served[event_id][2] == pytest.approx(scores, abs=1e-9), event_id
    variants = {p["variant"] for p in read_to_end(settings, "predictions", "PredictionEvent")}
    assert variants == {"champion"}  # no online role: it runs only when named, as in the demo

    # feedback for every labelled event and for no other, in both runs
    feedback = read_to_end(settings, "feedback", "FeedbackEvent")
    assert {f["event_id"] for f in feedback} == labelled
    assert {f["event_id"] for f in read_to_end(embedded_settings, "feedback", "FeedbackEvent")} == labelled
    assert not read_to_end(settings, "deadletter", "DeadLetter")

    # the monitor saw the champion's outcome of every labelled event, as in the embedded run
    assert _final_samples(settings) == len(labelled)

    # /metrics over HTTP counts what the topics hold
    features_topic = f"{settings.topic_prefix}features"
    assert _metric(samples, "riverops_events_in_total", role="scorer", topic=features_topic) == N
    assert _metric(samples, "riverops_events_out_total", role="joiner",
                   topic=feedback_topic) == len(feedback)
    assert _metric(samples, "riverops_model_samples", role="monitor", model="fraud", version="1",
                   variant="champion") == len(labelled)
    assert _metric(samples, "riverops_model_alias_version", role="scorer", alias="champion") == 1
