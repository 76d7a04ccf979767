"""The retrainer's knobs reach its triggers from the environment, as an operator sets them.

``riverops worker retrainer`` runs as a subprocess configured only by RIVEROPS_* variables;
``RIVEROPS_RETRAINER__DEGRADATION_BELOW`` (off by default) and
``RIVEROPS_RETRAINER__POLICY__MIN_SAMPLES`` (500 by default) are set, and metrics events of
the champion under that level over fewer than 500 samples are fed: a RetrainRequest with
reason ``degradation`` must appear on the retrain topic. With either variable ignored, no
request is made.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from riverops.kafka.clients import make_producer
from riverops.kafka.topics import TopicCatalogue
from riverops.schemas.events import MetricsEvent
from riverops.settings import Settings

from .champion import register_champion
from .conftest import read_topic
from .procs import start_worker_process, stop_process

LEVEL = 0.9
SAMPLES = 200  # under the default min_samples (500): only the variable lets them count


def _metrics(settings: Settings, value: float) -> None:
    """Rolling metrics of the champion (fraud v1), under LEVEL, a few windows of them."""
    codec, producer = settings.codec(), make_producer(settings)
    topic = TopicCatalogue.from_settings(settings).name("metrics")
    for i in range(3):
        event = MetricsEvent(model="fraud", version=1, variant="champion", window_kind="count",
                             window_size=1000.0, samples=SAMPLES + i, metrics={"roc_auc": value},
                             emitted_at=datetime.now(UTC))
        producer.produce(topic, key="fraud", value=codec.encode("MetricsEvent", event.to_avro()))
    assert producer.flush(15) == 0


def test_degradation_below_from_the_environment_triggers_a_retrain(loop_settings: Settings,
                                                                   tmp_path: Path) -> None:
    settings = loop_settings
    register_champion(settings)
    _metrics(settings, LEVEL - 0.05)  # read from the start by the worker's new group
    log = tmp_path / "retrainer.log"
    worker = start_worker_process(
        settings, "retrainer", group_prefix=f"settings-{uuid.uuid4().hex[:6]}", log=log,
        extra_env={"RIVEROPS_RETRAINER__DEGRADATION_BELOW": str(LEVEL),
                   "RIVEROPS_RETRAINER__POLICY__MIN_SAMPLES": str(SAMPLES)},
    )
    try:
        requests = read_topic(settings, "retrain", "RetrainRequest", expected=1, timeout=90, settle=2.0)
        assert worker.poll() is None, f"the retrainer exited: {log.read_text()[-3000:]}"
    finally:
        code = stop_process(worker)
    assert requests, f"no retrain request: {log.read_text()[-3000:]}"
    (request,) = requests  # the cooldown (20 s) holds the other two windows back
    assert (request["model"], request["reason"], request["requested_by"]) == (
        "fraud", "degradation", "retrainer")
    assert request["params"] == {"metric": "roc_auc", "value": LEVEL - 0.05}
    assert code == 0, log.read_text()[-3000:]
