"""The retrainer's shell without a broker: the window replay on assignment, what it may
commit, feedback refused on arrival, triggers sent as outputs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import TopicPartition
from river.datasets import synth

from riverops.kafka.topics import TopicCatalogue
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.roles.retrainer import RetrainerRole
from riverops.runtime import Input, Outputs
from riverops.schemas.errors import InvalidEventError
from riverops.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Message:
    topic_: str
    partition_: int
    offset_: int

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes:
        return b"fraud"

    def value(self) -> bytes:
        return b""


class FakeContext:
    """What the role asks of the runtime's Context."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = TopicCatalogue.from_settings(settings)
        self.registry = Registry()
        self.telemetry = None
        self.feedback_ends: dict[tuple[str, int], int] = {}

    def ends(self, topic: str) -> dict[tuple[str, int], int]:
        return dict(self.feedback_ends)

    def at_end(self, ends: Any) -> bool:
        return False

    def assigned(self, topic: str) -> bool:
        return True


def role(**retrainer: Any) -> tuple[RetrainerRole, FakeContext, Settings]:
    settings = Settings(topic_prefix="t.", signing_key="k", retrainer=retrainer)
    spec = RetrainerRole(settings)
    ctx = FakeContext(settings)
    spec.start(ctx)  # type: ignore[arg-type]
    return spec, ctx, settings


def feedback(i: int, **changes: Any) -> dict[str, Any]:
    return {"event_id": f"e{i}", "model": "fraud", "entity_id": "c", "event_time": T0,
            "features": {"x": 1.0}, "label": True, "label_time": T0, "predictions": [], **changes}


def test_assignment_rewinds_feedback_by_window_events_and_the_commit_never_goes_back() -> None:
    spec, ctx, _ = role(window_events=100)
    fb, drift = ctx.catalogue.name("feedback"), ctx.catalogue.name("drift")
    partitions = [TopicPartition(fb, 0), TopicPartition(fb, 1), TopicPartition(fb, 2),
                  TopicPartition(drift, 0)]
    spec.assign(partitions, {(fb, 0): 250, (fb, 1): 40, (drift, 0): 7})
    assert [tp.offset for tp in partitions] == [150, 0, TopicPartition(fb, 2).offset,
                                                TopicPartition(drift, 0).offset]
    # replaying 150..199 must not move the committed 250 back; past it, it moves on
    assert spec.offsets({(fb, 0): 200, (drift, 0): 9}) == {(fb, 0): 250, (drift, 0): 9}
    assert spec.offsets({(fb, 0): 260}) == {(fb, 0): 260}


def test_invalid_feedback_is_rejected_on_arrival_once_and_kept_out_of_the_window() -> None:
    spec, ctx, _ = role(window_events=100)
    fb = ctx.catalogue.name("feedback")
    spec.assign([TopicPartition(fb, 0)], {(fb, 0): 10})
    nan = feedback(1, features={"x": float("nan")})
    batch = [Input("feedback", Message(fb, 0, 3), nan),  # replayed: rejected when first read
             Input("feedback", Message(fb, 0, 11), nan),
             Input("feedback", Message(fb, 0, 12), feedback(2))]
    out = Outputs()
    spec.handle(batch, out)
    assert [(source.offset(), type(error)) for source, error in out.rejected] == [(11, InvalidEventError)]
    assert [r["event_id"] for r, _ in spec.core.window("fraud")] == ["e2"]


def test_a_trigger_is_sent_as_a_retrain_request_through_the_outputs() -> None:
    spec, ctx, _ = role(cooldown_seconds=0.0)
    alarm = {"model": "fraud", "version": 1, "variant": "champion", "kind": "concept",
             "detector": "ADWIN", "statistic": 0.5, "threshold": 0.1, "feature": None,
             "samples": 10, "detected_at": T0}
    out = Outputs()
    spec.handle([Input("drift", Message(ctx.catalogue.name("drift"), 0, 0), alarm)], out)
    (request,) = out.records["retrain"]
    assert (request["model"], request["reason"], request["requested_by"]) == ("fraud", "drift", "monitor")
    assert request["params"]["since_ms"] == T0.timestamp() * 1000.0
    assert spec.stats.triggered == 1


def test_a_waiting_request_holds_the_retrain_commit_back() -> None:
    spec, ctx, _ = role()
    retrain = ctx.catalogue.name("retrain")
    ctx.feedback_ends = {(ctx.catalogue.name("feedback"), 0): 50}  # never reached (at_end False)
    request = {"request_id": "r", "model": "fraud", "reason": "manual", "requested_by": "t",
               "requested_at": T0, "params": {}}
    spec.handle([Input("retrain", Message(retrain, 0, 4), request)], Outputs())
    assert spec.offsets({(retrain, 0): 5}) == {(retrain, 0): 4}
    spec.revoke([TopicPartition(retrain, 0)])
    assert spec.core.waiting == [] and spec.offsets({(retrain, 0): 5}) == {(retrain, 0): 5}


class RegistryContext(FakeContext):
    """A FakeContext whose registry changes are applied in place (no topic)."""

    def publish_change(self, build: Any) -> list[Any]:
        records = build(self.registry)
        self.registry.apply_all(records)
        return list(records)


def test_a_drift_request_is_recovered_fast_and_then_settled(tmp_path: Any) -> None:
    """SINE1 -> SINE2 through the role: a fast run at 400 post-alarm events registers and
    promotes a candidate learned from them; the request then waits for drift_min_samples."""
    settings = Settings(topic_prefix="t.", signing_key="k" * 32, artifact_dir=tmp_path,
                        retrainer={"drift_min_samples": 2_500, "cooldown_seconds": 0.0,
                                   "policy": {"metric": "accuracy", "margin": 0.02,
                                              "min_samples": 300}})
    spec, ctx = RetrainerRole(settings), RegistryContext(settings)
    spec.start(ctx)  # type: ignore[arg-type]
    champion = get_spec("logreg").build(seed=1)
    old = [({str(k): float(v) for k, v in x.items()}, bool(y))
           for x, y in synth.Sine(classification_function=0, seed=1).take(4_000)]
    learn_in_order(champion, [x for x, _ in old[:2_000]], [y for _, y in old[:2_000]])
    ctx.registry.apply_all(register_trained(settings, ctx.registry, "fraud", champion,
                                            spec_name="logreg", stage="champion", by="t", reason="r"))
    new = [({str(k): float(v) for k, v in x.items()}, bool(y))
           for x, y in synth.Sine(classification_function=1, seed=2).take(400)]
    fb = ctx.catalogue.name("feedback")
    batch = [Input("feedback", Message(fb, 0, i),
                   feedback(i, event_time=T0 + timedelta(milliseconds=i - 2_000), features=x, label=y))
             for i, (x, y) in enumerate(old[2_000:] + new)]
    request = {"request_id": "r", "model": "fraud", "reason": "drift", "requested_by": "monitor",
               "requested_at": T0, "params": {"since_ms": T0.timestamp() * 1000.0}}
    batch.append(Input("retrain", Message(ctx.catalogue.name("retrain"), 0, 0), request))
    spec.handle(batch, Outputs())
    spec.tick(1.0, Outputs())
    now = ctx.registry.champion("fraud")
    assert now is not None and now.version == 2, spec.stats.decisions
    assert "fast recovery at 400 post-alarm events" in now.reason and "after the alarm" in now.reason
    assert now.lineage is not None and now.lineage.samples == 280  # 400 less the 30% held out
    assert spec.core.waiting == [request]  # the settled run comes at drift_min_samples
