"""The processing guarantee a command uses on the broker it reached."""

from __future__ import annotations

import logging

import pytest

from riverops.cli.common import for_broker
from riverops.kafka.tansu import TANSU_CLUSTER_ID
from riverops.settings import Settings


def test_the_embedded_broker_turns_the_default_to_at_least_once_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        settings = for_broker(Settings(), TANSU_CLUSTER_ID)
    assert settings.processing_guarantee == "at_least_once"
    assert "cannot do transactions" in caplog.text


def test_a_guarantee_set_explicitly_or_another_broker_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert for_broker(Settings(), "kafka-cluster-id").processing_guarantee == "exactly_once"
    assert for_broker(Settings(), None).processing_guarantee == "exactly_once"
    explicit = Settings(processing_guarantee="exactly_once")
    assert for_broker(explicit, TANSU_CLUSTER_ID).processing_guarantee == "exactly_once"
    monkeypatch.setenv("RIVEROPS_PROCESSING_GUARANTEE", "exactly_once")  # as an operator sets it
    assert for_broker(Settings(), TANSU_CLUSTER_ID).processing_guarantee == "exactly_once"
