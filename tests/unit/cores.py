"""One adapter per pure core, for the contract suite (``test_core_contracts.py``): the
joiner, online and scorer cores here, the feedback readers in ``cores_feedback.py``.

Each :class:`~corecase.CoreCase` builds its core on a small deterministic stream from
:func:`~corecase.events`, feeds it and reads its outputs as plain values (see
``corecase.py`` for the protocol and how to add a core). The docstring of each ``bad``
says which bad inputs apply to that core and which do not, and why.

:func:`main` prints every case's outputs as JSON (a repr per case): the suite runs it in
other processes, under other ``PYTHONHASHSEED`` values, to check that replays agree there.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import datetime
from typing import Any

from riverops.kafka.topics import Source
from riverops.models.specs import get_spec
from riverops.roles.joiner import JoinCore, JoinInput, Kind, Outcome
from riverops.roles.online import Kind as OnlineKind
from riverops.roles.online import OnlineCore, OnlineInput
from riverops.roles.scorer import ScorerCore, ServingModel
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.events import Artifact, ModelVersion
from riverops.schemas.validation import MAX_STRING

from .corecase import (
    PROBES,
    T0,
    CoreCase,
    Event,
    Output,
    Sources,
    bad_event,
    chunks,
    events,
    features_of,
    label_of,
    rejection,
    run,
    with_challenger,
)
from .cores_feedback import LearnerBatchCase, LearnerCase, MonitorCase, RetrainerCase

__all__ = ["CASES", "outputs_by_case", "main"]

CODEC = SingleObjectCodec()


# -- joiner --------------------------------------------------------------------------------

JOIN_TTL_MS = 10_000
_TOPICS: dict[Kind, str] = {"features": "features", "prediction": "predictions", "label": "labels"}


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _predictions(e: Event) -> list[bytes]:
    """The scorer's PredictionEvents of an event: the champion's, a challenger's every third."""
    t = _ms(e.event_time)
    made = [(1, "champion", e.score)]
    if with_challenger(e):
        made.append((2, "challenger", 1 - e.score))
    return [CODEC.encode("PredictionEvent", {
        "event_id": e.event_id, "model": "fraud", "version": version, "variant": variant,
        "prediction": p >= 0.5, "scores": {"False": 1 - p, "True": p}, "latency": 0.001,
        "event_time": t, "predicted_at": t + 2}) for version, variant, p in made]


class JoinerCase(CoreCase):
    """:class:`JoinCore` on encoded features, predictions and labels in time order; every 11th
    event gets no label (it expires unlabelled) and every 13th no features nor prediction
    (its label expires as an orphan: a dead letter), so the clean stream has refusals too."""

    name = "joiner"

    def stream(self) -> list[JoinInput]:
        records: list[tuple[int, int, Kind, str, bytes]] = []
        for i, e in enumerate(events(60)):
            t, features = _ms(e.event_time), CODEC.encode("FeatureEvent", features_of(e))
            if i % 13 != 5:
                records.append((t, 0, "features", e.event_id, features))
                records += [(t + 2, 1, "prediction", e.event_id, p) for p in _predictions(e)]
            if i % 11 != 4:
                label = CODEC.encode("LabelEvent", label_of(e))
                records.append((_ms(e.label_time), 2, "label", e.event_id, label))
        records.sort(key=lambda r: (r[0], r[1], r[3]))
        offsets: Counter[str] = Counter()
        out = []
        for t, _, kind, event_id, payload in records:
            topic = _TOPICS[kind]
            out.append(JoinInput(kind, event_id, payload, t, (topic, 0, offsets[topic])))
            offsets[topic] += 1
        return out

    def new(self) -> JoinCore:
        return JoinCore(ttl_ms=JOIN_TTL_MS)

    def feed(self, core: JoinCore, batch: list[JoinInput]) -> list[Output]:
        core.add_many(batch)
        result = core.flush()
        kept: tuple[Outcome, ...] = ("joined", "expired_unlabelled", "orphan_labels")  # no dups
        return [*(("feedback", record) for record in result.feedback),
                *(rejection(origin.source, error) for origin, error in result.rejected),
                ("expired", result.expired), ("outcomes", {k: result.outcomes[k] for k in kept})]

    def source(self, item: JoinInput) -> Source:
        return item.source

    def probe(self, core: JoinCore) -> dict[str, Output]:
        stats = core.stats()  # positions are checked by behaviour: re-deliveries after restore
        return {"pending": (stats.pending, stats.pending_bytes, stats.done, stats.stream_time_ms)}

    def resent(self, item: JoinInput, n: int) -> list[JoinInput]:
        return [item._replace(source=(item.source[0], 1, n))]

    def snapshot(self, core: JoinCore) -> bytes:
        return core.snapshot()

    def restore(self, snapshot: bytes) -> JoinCore:
        return JoinCore.restore(snapshot, ttl_ms=JOIN_TTL_MS)

    def bad(self, stream: list[Any], at: int) -> dict[str, list[Any]]:
        """Bad payloads and keys, refused on arrival, and complete events that cannot become
        feedback, refused at their flush. Not here: a label of the wrong type and an unknown
        model (the joiner knows neither tasks nor models; the learner and the monitor refuse
        such feedback)."""
        source = Sources()

        def one(kind: Kind, event_id: str, payload: bytes | None) -> JoinInput:
            # time 0: the stream clock does not move
            return JoinInput(kind, event_id, payload, 0, source(_TOPICS[kind]))

        def complete(e: Event, *, features: bytes | None = None,
                     label: bytes | None = None) -> list[JoinInput]:
            features = features or CODEC.encode("FeatureEvent", features_of(e))
            label = label or CODEC.encode("LabelEvent", label_of(e))
            return [one("features", e.event_id, features),
                    *(one("prediction", e.event_id, p) for p in _predictions(e)),
                    one("label", e.event_id, label)]

        e = bad_event("bad-x")
        return {
            "undecodable bytes": [one("features", "bad-bytes", b"\x00\x01 not avro at all")],
            "tombstone": [one("label", "bad-tombstone", None)],
            "empty event id": [one("label", "", CODEC.encode("LabelEvent", label_of(e)))],
            "payload of another schema": [
                one("features", "bad-x", CODEC.encode("LabelEvent", label_of(e)))],
            "truncated body": complete(bad_event("bad-cut"), features=CODEC.encode(
                "FeatureEvent", features_of(bad_event("bad-cut")))[:14]),
            "NaN feature": complete(bad_event("bad-nan", salary=float("nan"))),
            "infinite feature": complete(bad_event("bad-inf", loan=float("inf"))),
            "label for another model": complete(bad_event("bad-model"), label=CODEC.encode(
                "LabelEvent", label_of(bad_event("bad-model"), model="other"))),
            "features of another event": complete(bad_event("bad-key"), features=CODEC.encode(
                "FeatureEvent", features_of(bad_event("elsewhere")))),
        }


# -- online --------------------------------------------------------------------------------

class OnlineCase(CoreCase):
    """:class:`OnlineCore` (a Hoeffding tree) on features and labels in time order."""

    name = "online"

    def stream(self) -> list[OnlineInput]:
        timed: list[tuple[datetime, int, str, OnlineKind, dict[str, Any]]] = sorted(
            [(e.event_time, 0, e.event_id, "features", features_of(e)) for e in events(80)]
            + [(e.label_time, 1, e.event_id, "label", label_of(e)) for e in events(80)],
            key=lambda r: (r[0], r[1], r[2]))
        offsets: Counter[str] = Counter()
        out = []
        for *_, kind, record in timed:
            topic = "features" if kind == "features" else "labels"
            out.append(OnlineInput(kind, record, (topic, 0, offsets[topic])))
            offsets[topic] += 1
        return out

    def new(self) -> OnlineCore:
        return OnlineCore(get_spec("hoeffding-tree").build(seed=1), version=1, task="binary")

    def feed(self, core: OnlineCore, batch: list[OnlineInput]) -> list[Output]:
        result = core.process(batch, predicted_at=T0)
        return [*(("prediction", p) for p in result.predictions),
                *(rejection(r.source or ("", 0, 0), r.error) for r in result.rejected),
                ("learned", result.learned)]

    def source(self, item: OnlineInput) -> Source:
        assert item.source is not None
        return item.source

    def probe(self, core: OnlineCore) -> dict[str, Output]:
        model = copy.deepcopy(core.estimator)
        return {"metrics": core.metrics(), "pending": core.stats().pending,
                "answers": [model.predict_proba_one(x) for x in PROBES]}

    def resent(self, item: OnlineInput, n: int) -> list[OnlineInput]:
        topic = self.source(item)[0]
        return [item._replace(record=copy.deepcopy(item.record), source=(topic, 1, n))]

    def bad(self, stream: list[Any], at: int) -> dict[str, list[Any]]:
        """Bad features, and bad labels for an event still waiting for its label (its good
        label, later in the stream, must still be learned). Not here: an unknown model (a
        core serves one model; the role refuses a model without a champion) and
        undecodable bytes (the runtime decodes)."""
        source = Sources()
        seen = {i.record["event_id"] for i in stream[:at] if i.kind == "features"}
        waiting = next(i.record for i in stream[at:]
                       if i.kind == "label" and i.record["event_id"] in seen)

        def features(record: Any) -> list[Any]:
            return [OnlineInput("features", record, source("features"))]

        def label(record: Any) -> list[Any]:
            return [OnlineInput("label", record, source("labels"))]

        good = features_of(bad_event("bad-x"))
        return {
            "NaN feature": features(features_of(bad_event("bad-nan", salary=float("nan")))),
            "infinite feature": features(features_of(bad_event("bad-inf", loan=float("inf")))),
            "empty event id": features({**good, "event_id": ""}),
            "features not a map": features({**good, "event_id": "bad-map", "features": 3.0}),
            "a string where the model wants a number": features(
                features_of(bad_event("bad-str", salary="high"))),
            "not a record": label(["fraud", "bad-list"]),
            "label of the wrong type": label({**waiting, "label": "maybe"}),
            "label for another model than its features": label({**waiting, "model": "other"}),
            "label for an unknown event": label({**waiting, "event_id": "bad-unknown"}),
        }


# -- scorer --------------------------------------------------------------------------------

def _version(version: int, spec: str) -> ModelVersion:
    return ModelVersion(model="fraud", version=version, stage="champion", spec=spec, task="binary",
                        artifact=Artifact(inline=b"x", sha256="0" * 64, signature="1" * 64, size=1),
                        changed_by="contracts", reason="contract suite", changed_at=T0)


class ScorerCase(CoreCase):
    """:class:`ScorerCore` serving a logistic regression champion, a Hoeffding tree
    challenger on 40% of the events and a HAT shadow, trained on the same 300 events (enough
    for the trees' leaves to read the features)."""

    name = "scorer"
    stateless = True

    def stream(self) -> list[Any]:
        return [(features_of(e), ("features", 0, i)) for i, e in enumerate(events(60))]

    def new(self) -> ScorerCore:
        rows = [(e.features, e.label) for e in events(300, seed=5)]

        def trained(spec: str, version: int, variant: Any) -> ServingModel:
            model = get_spec(spec).build(seed=1)
            for x, y in rows:
                model.learn_one(x, y)
            return ServingModel(_version(version, spec), model, variant)

        core = ScorerCore(clock=lambda: 0.0)
        core.set_plan("fraud", champion=trained("logreg", 1, "champion"),
                      challengers=[(trained("hoeffding-tree", 2, "challenger"), 0.4)],
                      shadows=[trained("hat", 3, "shadow")])
        return core

    def feed(self, core: ScorerCore, batch: list[Any]) -> list[Output]:
        result = core.score([r for r, _ in batch])
        return [*(("prediction", {k: v for k, v in p.items() if k != "predicted_at"})  # wall clock
                  for p in result.predictions),
                *(rejection(batch[i][1], error) for i, error in result.invalid)]

    def source(self, item: Any) -> Source:
        return item[1]  # type: ignore[no-any-return]

    def bad(self, stream: list[Any], at: int) -> dict[str, list[Any]]:
        """The one feature rule's refusals, an unknown model, records of the wrong shape, and
        a string where the trees learned numbers (they cannot score it)."""
        source = Sources()

        def item(record: Any) -> list[Any]:
            return [(record, source("features"))]

        good = features_of(bad_event("bad-x"))
        return {
            "NaN feature": item(features_of(bad_event("bad-nan", salary=float("nan")))),
            "infinite feature": item(features_of(bad_event("bad-inf", loan=float("inf")))),
            "huge string feature": item(
                features_of(bad_event("bad-big", zone="z" * (MAX_STRING + 1)))),
            "empty event id": item({**good, "event_id": ""}),
            "empty model name": item({**good, "event_id": "bad-noname", "model": ""}),
            "unknown model": item({**good, "event_id": "bad-model", "model": "nope"}),
            "features not a map": item({**good, "event_id": "bad-map", "features": None}),
            "not a record": item(["fraud", "bad-list"]),
            "a string where the model wants a number": item(
                features_of(bad_event("bad-str", salary="high"))),
        }


CASES: list[CoreCase] = [JoinerCase(), LearnerCase(), LearnerBatchCase(), MonitorCase(),
                         OnlineCase(), ScorerCase(), RetrainerCase()]


def outputs_by_case(cases: list[CoreCase]) -> dict[str, str]:
    """Each case's outputs over its stream, as a repr (dict order and float bits included)."""
    return {case.name: repr(run(case, case.new(), chunks(case.stream(), case.batch_size)))
            for case in cases}


def main() -> None:
    """Print every case's outputs, as JSON; from the repository's root:
    ``python -c "import tests.unit.cores as c; c.main()"``."""
    print(json.dumps(outputs_by_case(CASES)))
