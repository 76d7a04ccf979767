"""JoinerRole without Kafka: cores restored on assignment from the changelog, the changes
of the changed partitions only at each commit, the consumed offsets committed, every
refusal dead-lettered through the runtime and covered by the changelog's header,
expirations and pending state reported to the telemetry.

The context is a stand-in with only what the role reads of it, and the changelog a list
of records per partition (:class:`_Log`, folded by the real :class:`Folding`); the Kafka
path is tests/integration/test_joiner_crash.py, test_joiner_changelog.py and
test_bad_input.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Message, TopicPartition
from prometheus_client import CollectorRegistry

from riverops.kafka.outbox import RawRecord
from riverops.kafka.topics import PREDICTIONS_HEADER, TopicCatalogue
from riverops.roles.joiner import JoinCore, JoinerRole, JoinerStats
from riverops.roles.joiner import role as joiner_role
from riverops.roles.joiner.changelog import Folding, Restored
from riverops.runtime import Input, Outputs
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.errors import InvalidEventError
from riverops.sections import JoinerSettings
from riverops.settings import Settings
from riverops.telemetry import Telemetry

from .test_joiner import features_of, label_of, prediction_of

GROUP = "g"
CODEC = SingleObjectCodec()


class _Context:
    """The part of riverops.runtime.Context the joiner uses."""

    def __init__(self, telemetry: Telemetry | None) -> None:
        self.codec, self.telemetry = CODEC, telemetry


class _Log:
    """The changelog topic as a list of (key, value) per partition."""

    def __init__(self) -> None:
        self.partitions: dict[int, list[tuple[bytes | None, bytes | None]]] = {}

    def append(self, records: list[RawRecord]) -> None:
        for partition, key, value in records:
            self.partitions.setdefault(partition, []).append((key, value))

    def restore(self, _settings: Settings, _topic: str, partition: int, into: JoinCore) -> Restored:
        folding = Folding(into)
        folding.add(self.partitions.get(partition, []))
        return Restored(folding.finish(), folding.records, 0.0)

    def state_of(self, partition: int) -> JoinCore:
        core = JoinCore()
        self.restore(Settings(), "", partition, core)
        return core


@pytest.fixture
def changelog(monkeypatch: pytest.MonkeyPatch) -> _Log:
    log = _Log()
    monkeypatch.setattr(joiner_role, "ensure_changelog", lambda settings, group: f"{group}.join-state")
    monkeypatch.setattr(joiner_role, "restore", log.restore)
    return log


@pytest.fixture
def settings(tmp_path: Path, changelog: _Log) -> Settings:
    return Settings(state_dir=tmp_path / "state", processing_guarantee="at_least_once", joiner=JoinerSettings(
        checkpoint_seconds=3.0, complete_runs_seconds=1.5, label_ttl_seconds=1.0))


def _commit(role: JoinerRole, log: _Log) -> list[RawRecord]:
    """The role's changelog records, appended to ``log`` (as the runtime writes them)."""
    (records,) = role.changelog().values()
    log.append(list(records))
    return list(records)


def _topics(settings: Settings) -> dict[str, str]:
    catalogue = TopicCatalogue.from_settings(settings)
    return {role: catalogue.name(role) for role in ("features", "predictions", "labels")}


def _role(settings: Settings, telemetry: Telemetry | None = None) -> JoinerRole:
    role = JoinerRole(settings, group_id=GROUP, stats=JoinerStats())
    role.start(_Context(telemetry))  # type: ignore[arg-type]
    return role


def _message(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
             t: int, headers: list[tuple[str, str | bytes | None]] | None = None) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=key, value=value,
                   timestamp=(1, t), headers=headers)


def _inputs(*messages: Message) -> list[Input]:
    """Messages as the runtime hands them to a role with ``decode = False``."""
    roles = {name: role for role, name in _topics(Settings()).items()}
    return [Input(roles[m.topic() or ""], m, m.value()) for m in messages]  # type: ignore[arg-type]


def _assign(role: JoinerRole, settings: Settings, partitions: list[int],
            committed: dict[tuple[str, int], int]) -> list[TopicPartition]:
    tps = [TopicPartition(topic, p) for p in partitions for topic in _topics(settings).values()]
    role.assign(tps, committed)
    return tps


def test_the_role_follows_the_joiner_section(settings: Settings) -> None:
    role = _role(settings)
    assert (role.name, role.inputs, role.decode) == ("joiner", ("features", "predictions", "labels"), False)
    assert dict(role.consumer_config) == {"partition.assignment.strategy": "range"}
    assert (role.commit_seconds, role.read_on_seconds) == (3.0, 1.5)


def test_a_batch_is_incomplete_while_an_event_s_predictions_are_cut(settings: Settings) -> None:
    role, topics = _role(settings), _topics(settings)
    two: list[tuple[str, str | bytes | None]] = [(PREDICTIONS_HEADER, b"2")]
    first = _message(topics["predictions"], 0, 0, b"e1", b"p", 1, two)
    assert role.incomplete([first])
    assert not role.incomplete([first, _message(topics["predictions"], 0, 1, b"e1", b"p", 1, two)])
    # another partition's whole run does not complete this one; other topics do not count
    other = _message(topics["predictions"], 1, 0, b"e2", b"p", 1, [(PREDICTIONS_HEADER, b"1")])
    assert role.incomplete([first, other, _message(topics["features"], 0, 0, b"e1", b"f", 1)])


def test_joins_and_writes_the_changes_of_the_changed_partitions(settings: Settings, changelog: _Log) -> None:
    metrics = CollectorRegistry()
    role, topics = _role(settings, Telemetry(metrics, role="joiner")), _topics(settings)
    _assign(role, settings, [0, 1], {})
    f, p, lab = topics["features"], topics["predictions"], topics["labels"]
    batch = _inputs(
        _message(f, 0, 0, b"e0", features_of("e0", 0), 0),  # e0 stays pending: no label
        _message(f, 0, 1, b"e1", features_of("e1", 0), 0),
        _message(p, 0, 0, b"e1", prediction_of("e1", 0), 0),
        _message(lab, 0, 0, b"e1", label_of("e1", 0), 0),
        _message(lab, 0, 1, None, label_of("e9", 0), 0),  # no key
    )
    out = Outputs()
    role.handle(batch, out)
    # spliced payloads, keyed by model
    assert [(model, CODEC.decode("FeedbackEvent", payload)["event_id"])
            for model, payload in out.encoded["feedback"]] == [("fraud", "e1")]
    ((source, error),) = out.rejected
    assert source is batch[-1].message and isinstance(error, InvalidEventError)
    assert (role.stats.consumed, role.stats.feedback) == (5, 1)
    assert metrics.get_sample_value("riverops_join_pending_items", {"role": "joiner"}) == 1

    records = _commit(role, changelog)
    # e0 pending, e1 emitted, then partition 0's header; partition 1 was assigned, never read
    kinds = [(partition, key, value[:1] if value else value) for partition, key, value in records]
    assert sorted(kinds[:-1]) == [(0, b"e0", b"P"), (0, b"e1", b"D")] and kinds[-1] == (0, b"", b"M")
    saved = changelog.state_of(0)
    assert saved.positions() == {(f, 0): 2, (p, 0): 1, (lab, 0): 2}  # the key-less label covered
    assert (saved.stats().pending, saved.stats().done) == (1, 1)
    assert role.stats.checkpoints == 1
    assert _commit(role, changelog) == [] and role.stats.checkpoints == 1  # unchanged: nothing written
    consumed = {(f, 0): 2, (p, 0): 1, (lab, 0): 2}
    assert role.offsets(consumed) == consumed  # the changelog holds the state as of them


def test_the_runtime_s_refusals_are_covered_by_the_header(settings: Settings, changelog: _Log) -> None:
    role, topics = _role(settings), _topics(settings)
    _assign(role, settings, [0], {})
    f = topics["features"]
    big = _message(f, 0, 1, b"e1", b"x" * 10, 0)
    out = Outputs()
    out.reject(big, InvalidEventError("record of 10 bytes, over the limit"))  # as the runtime does
    role.handle(_inputs(_message(f, 0, 0, b"e0", features_of("e0", 0), 0)), out)
    assert role.stats.consumed == 2
    _commit(role, changelog)
    assert changelog.state_of(0).positions() == {(f, 0): 2}  # a restart does not dead-letter it again


def test_the_core_s_refusals_and_expirations_go_through_the_runtime(settings: Settings) -> None:
    metrics = CollectorRegistry()
    role, topics = _role(settings, Telemetry(metrics, role="joiner")), _topics(settings)
    _assign(role, settings, [0], {})
    f, p, lab = topics["features"], topics["predictions"], topics["labels"]
    out = Outputs()
    role.handle(_inputs(
        _message(f, 0, 0, b"e0", features_of("e0", 0), 0),
        _message(p, 0, 0, b"e0", prediction_of("e0", 0), 0),
        _message(lab, 0, 0, b"e7", label_of("e7", 0), 0),  # an orphan once the TTL passed
        _message(p, 0, 1, b"e8", b"\x00garbage", 0),
    ), out)
    assert [type(error).__name__ for _, error in out.rejected] == ["DecodeError"]
    out = Outputs()
    role.handle(_inputs(_message(f, 0, 1, b"e1", features_of("e1", 5_000), 5_000)), out)
    ((origin, error),) = out.rejected
    assert (origin.topic(), origin.partition(), origin.offset(), origin.key()) == (lab, 0, 0, b"e7")
    assert "label without features and prediction" in str(error)

    def expired(kind: str) -> float | None:
        return metrics.get_sample_value("riverops_join_expired_total", {"role": "joiner", "kind": kind})

    assert (expired("features"), expired("prediction"), expired("label")) == (1, 1, 1)
    assert role.stats.cores is not None and role.stats.cores[0].orphan_labels == 1


def test_assignment_restores_each_partition_from_its_changelog(settings: Settings, changelog: _Log) -> None:
    topics = _topics(settings)
    f, lab = topics["features"], topics["labels"]
    first = _role(settings)
    _assign(first, settings, [0, 1, 2], {})
    first.handle(_inputs(_message(f, 0, 0, b"e0", features_of("e0", 0), 0),
                         _message(lab, 1, 4, b"e1", label_of("e1", 0), 0)), Outputs())
    _commit(first, changelog)
    first.handle(_inputs(_message(f, 2, 0, b"e2", features_of("e2", 0), 0)), Outputs())  # never committed
    first.revoke([TopicPartition(t, p) for p in (0, 1) for t in topics.values()])
    assert set(first.stats.cores or {}) == {2}

    second = _role(settings)
    tps = _assign(second, settings, [0, 1, 2], {})
    assert second.stats.restored == 2 and second.stats.restored_records == 4  # two events, two headers
    starts = {(tp.topic, tp.partition): tp.offset for tp in tps}
    assert starts[(f, 0)] == 1 and starts[(lab, 1)] == 5  # the header's positions, past what they hold
    assert starts[(f, 2)] < 0  # no changelog: the committed offset (or the reset policy)
    assert second.stats.cores is not None and second.stats.cores[0].pending == 1
    assert second.stats.cores[1].pending == 1 and second.stats.cores[2].pending == 0


def test_a_first_checkpoint_cut_before_its_header_restores_as_no_state(settings: Settings, changelog: _Log) -> None:
    """At least once a joiner killed inside its first changelog flush leaves entries and no
    header. Its successor must start the partition afresh (an empty core at the committed
    offsets), not keep what the entries said nor refuse the partition for good."""
    f = _topics(settings)["features"]
    first = _role(settings)
    _assign(first, settings, [0], {})
    first.handle(_inputs(_message(f, 0, 0, b"e0", features_of("e0", 0), 0),
                         _message(f, 0, 1, b"e1", features_of("e1", 0), 0)), Outputs())
    records = _commit(first, changelog)
    changelog.partitions[0] = [(key, value) for _p, key, value in records[:-1]]  # the header never landed

    second = _role(settings)
    tps = _assign(second, settings, [0], {})
    assert second.stats.restored == 0 and second.stats.restored_records == 2
    assert all(tp.offset < 0 for tp in tps)  # the committed offsets (or the reset policy)
    assert second.stats.cores is not None and second.stats.cores[0].pending == 0
