"""Every role in one worker; /metrics scraped over HTTP and parsed; lag per partition."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from river.datasets import synth

from riverops.kafka.producer import EventProducer
from riverops.kafka.tansu import free_port
from riverops.settings import Settings
from riverops.worker import run_roles

from .test_feedback_loop import _register


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def test_worker_all_serves_metrics_and_lag_per_partition(loop_settings: Settings) -> None:
    port = free_port()
    settings = Settings(**{**loop_settings.model_dump(), "metrics_port": port,
                           "signing_key": "test-signing-key"})
    _register(settings)
    prefix = f"riverops-m{uuid.uuid4().hex[:6]}"
    stop = threading.Event()
    exit_code: list[int] = []
    worker = threading.Thread(target=lambda: exit_code.append(
        run_roles(settings, ["scorer", "joiner", "monitor", "lag"], stop=stop, group_prefix=prefix)))
    worker.start()
    try:
        t0 = datetime(2026, 11, 1, tzinfo=UTC)
        time.sleep(4)  # group joins
        with EventProducer(settings) as producer:
            for i, (x, y) in enumerate(synth.Agrawal(classification_function=0, seed=5).take(2000)):
                producer.send_features(event_id=f"m{i}", model="fraud", entity_id="c", features=x,
                                       event_time=t0 + timedelta(seconds=i))
                producer.send_label(event_id=f"m{i}", model="fraud", label=bool(y),
                                    label_time=t0 + timedelta(seconds=i + 30))
        deadline = time.monotonic() + 60
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        while time.monotonic() < deadline:
            samples = _scrape(port)
            lag_rows = [lab for lab, _ in samples.get("riverops_consumer_lag", [])
                        if lab["group"] == f"{prefix}-scorer"]
            accuracy = [v for lab, v in samples.get("riverops_model_metric", [])
                        if lab["variant"] == "champion" and lab["metric"] == "accuracy"]
            scored = sum(v for lab, v in samples.get("riverops_events_in_total", [])
                         if lab["role"] == "scorer")
            deduped = [v for lab, v in samples.get("riverops_state_entries", [])
                       if lab["structure"] == "monitor_dedupe_ids" and v > 0]
            if len(lag_rows) >= settings.partitions and accuracy and scored >= 2000 and deduped:
                break
            time.sleep(1)
    finally:
        stop.set()
        worker.join(60)
    assert exit_code == [0]
    features_in = {lab["topic"]: v for lab, v in samples["riverops_events_in_total"]
                   if lab["role"] == "scorer"}
    assert features_in[f"{settings.topic_prefix}features"] == 2000
    lag = {(lab["topic"], lab["partition"]): v for lab, v in samples["riverops_consumer_lag"]
           if lab["group"] == f"{prefix}-scorer"}
    assert {p for _, p in lag} == {str(p) for p in range(settings.partitions)}
    accuracy = [v for lab, v in samples["riverops_model_metric"]
                if lab["variant"] == "champion" and lab["metric"] == "accuracy" and lab["window"] == "count"]
    assert accuracy and 0.5 < accuracy[0] <= 1.0
    aliases = {lab["alias"]: v for lab, v in samples["riverops_model_alias_version"] if lab["model"] == "fraud"}
    assert aliases["champion"] == 1.0 and aliases["shadow"] == 2.0
    assert "riverops_join_pending_items" in samples and "riverops_label_delay_seconds_bucket" in samples
    state = {(lab["role"], lab["structure"]): v for lab, v in samples["riverops_state_entries"]}
    assert {s for r, s in state if r == "joiner"} == {
        "join_pending_memory", "join_pending_disk", "join_done_memory", "join_done_disk"}
    assert state["joiner", "join_pending_disk"] == 0  # 2,000 events, far below the spill threshold
    assert 0 < state["monitor", "monitor_dedupe_ids"] <= 2000
    assert state["scorer", "registry_versions"] == 2 and state["scorer", "registry_artifacts"] == 2

    # the status view reads the same story back from the topics
    import json

    from click.testing import CliRunner

    from riverops.cli.main import cli

    result = CliRunner().invoke(
        cli, ["-b", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix, "status", "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["aliases"]["fraud"]["champion"] == [1]
    assert any(m["variant"] == "champion" and "accuracy" in m["metrics"] for m in shown["metrics"])
    assert any(row["group"] == f"{prefix}-scorer" for row in shown["lag"])
    table = CliRunner().invoke(
        cli, ["-b", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix, "status"]
    )
    assert table.exit_code == 0 and "rolling metrics" in table.output
