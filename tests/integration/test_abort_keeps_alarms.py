"""An aborted transaction loses none of the monitor's drift alarms.

After an abort the runtime rewinds the monitor to its committed offsets, and the core's
dedupe skips the re-read feedback, so its detectors are not rolled back: an alarm raised
in the aborted interval would never be raised again. The runtime sends such outputs
(``RoleSpec.kept_on_abort``) again in the next transaction. Here the first transaction
holding an alarm is aborted (the outbox's own abort, as after a failed commit), and the
drift topic, read committed, must hold every alarm the monitor raised, once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from riverops.kafka.outbox import TransactionAborted, TransactionalOutbox
from riverops.roles.monitor import MonitorStats, run_monitor
from riverops.schemas import events as ev
from riverops.settings import Settings

from ..conftest import ENGINE
from .champion import register_champion
from .conftest import Running, read_topic
from .test_monitor_scale_out import _send

pytestmark = pytest.mark.skipif(ENGINE == "tansu", reason="the embedded broker has no transactions")
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RIGHT, WRONG = 800, 800  # the champion right, then wrong: its error goes 0 -> 1


def _feedback(index: int) -> ev.FeedbackEvent:
    label = index % 2 == 0
    said = label if index < RIGHT else not label
    return ev.FeedbackEvent(
        event_id=f"e{index}", model="fraud", entity_id="c", event_time=T0 + timedelta(seconds=index),
        features={"x": float(index % 5)}, label=label, label_time=T0 + timedelta(seconds=index + 1),
        predictions=[ev.MadePrediction(version=1, variant="champion", prediction=said,
                                       scores={"True": 0.9 if said else 0.1, "False": 0.1 if said else 0.9})],
    )


def test_an_alarm_of_an_aborted_transaction_is_sent_again(
    loop_settings: Settings, start_worker: Callable[..., Running], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(**{**loop_settings.model_dump(), "monitor": {
        "emit_seconds": 0.5, "data_drift": {"enabled": False}}})
    assert settings.processing_guarantee == "exactly_once"
    register_champion(settings)
    drift_topic = f"{settings.topic_prefix}drift"
    injected: dict[str, Any] = {"alarm_in_interval": False, "aborts": 0}
    real_send, real_commit = TransactionalOutbox.send, TransactionalOutbox.commit

    def send(self: TransactionalOutbox, topic: str, *args: Any, **kwargs: Any) -> None:
        if topic == drift_topic:
            injected["alarm_in_interval"] = True
        real_send(self, topic, *args, **kwargs)

    def commit(self: TransactionalOutbox, *args: Any) -> None:
        if injected["alarm_in_interval"] and not injected["aborts"]:
            injected["aborts"] += 1
            self.abort()
            raise TransactionAborted("injected: the first transaction with an alarm")
        real_commit(self, *args)

    monkeypatch.setattr(TransactionalOutbox, "send", send)
    monkeypatch.setattr(TransactionalOutbox, "commit", commit)
    stats = MonitorStats()
    start_worker(run_monitor, settings, stats, group_id=f"g-{uuid.uuid4().hex[:8]}")
    _send(settings, [_feedback(i) for i in range(RIGHT + WRONG)])

    deadline = time.monotonic() + 60
    while [row.samples for row in stats.status] != [RIGHT + WRONG] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [row.samples for row in stats.status] == [RIGHT + WRONG]
    assert injected["aborts"] == 1, "no transaction held an alarm: nothing was tested"
    assert stats.drift_events >= 1
    alarms = read_topic(settings, "drift", "DriftEvent", expected=stats.drift_events, settle=2)
    print(f"\nalarms raised {stats.drift_events}, read committed {len(alarms)}, "
          f"re-read feedback skipped {stats.duplicates}")
    assert len(alarms) == stats.drift_events
