"""make_consumer caps librdkafka's prefetch queue from the settings (issue 18)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Consumer
from pydantic import ValidationError

from riverops.kafka import clients
from riverops.settings import Settings


def test_each_consumer_prefetches_at_most_the_configured_kbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[dict[str, Any]] = []
    monkeypatch.setattr(clients, "Consumer", lambda config: configs.append(config))
    clients.make_consumer(Settings(), "g")
    monkeypatch.setenv("RIVEROPS_CONSUMER_QUEUE_KBYTES", "4096")
    clients.make_consumer(Settings(), "g")
    clients.make_consumer(Settings(), "g", **{"queued.max.messages.kbytes": 1024})  # an override wins
    assert [c["queued.max.messages.kbytes"] for c in configs] == [16_384, 4096, 1024]
    # librdkafka takes the property and value (no bootstrap servers: nothing is contacted)
    Consumer({k: v for k, v in configs[0].items() if k != "bootstrap.servers"}).close()
    with pytest.raises(ValidationError):
        Settings(consumer_queue_kbytes=0)
    with pytest.raises(ValidationError):
        Settings(consumer_queue_kbytes=2_097_152)  # librdkafka's maximum is 2097151
