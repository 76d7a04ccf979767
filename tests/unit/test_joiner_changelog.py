"""The joiner's changelog: the records of every commit, folded, are the core's whole state."""

from __future__ import annotations

import pytest

from riverops.roles.joiner import JoinCore
from riverops.roles.joiner.changelog import encode_changes, encode_header, fold
from riverops.schemas.errors import DecodeError

from .test_joiner import counters, run, uninterrupted


def _commit(core: JoinCore, log: list[tuple[bytes | None, bytes | None]]) -> None:
    """What JoinerRole.changelog writes at a commit, appended to one partition's log."""
    records = encode_changes(0, core.changes()) + [encode_header(0, core.state(whole=False))]
    log += [(key, value) for _partition, key, value in records]


def _compacted(log: list[tuple[bytes | None, bytes | None]]) -> list[tuple[bytes | None, bytes | None]]:
    """The log after compaction: the last record per key, in log order (tombstones kept)."""
    last = {key: index for index, (key, _value) in enumerate(log)}
    return [record for index, record in enumerate(log) if last[record[0]] == index]


def _same(a: JoinCore, b: JoinCore) -> bool:
    """The same state, whatever the order of entries with equal times."""
    x, y = a.state(whole=True), b.state(whole=True)
    return (x.stream_time, x.partitions, x.positions, x.counts, dict(x.pending), dict(x.done)) == (
        y.stream_time, y.partitions, y.positions, y.counts, dict(y.pending), dict(y.done))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_folded_changelog_resumes_exactly_like_an_uninterrupted_run(seed: int) -> None:
    ttl = 10_000
    rng, batches, whole, expected_feedback, expected_dead = uninterrupted(seed, ttl)

    core, log = JoinCore(ttl_ms=ttl), []
    feedback, dead = [], []
    cuts = set(rng.sample(range(1, len(batches)), 6))
    for index, batch in enumerate(batches):
        out = run(core, [batch])
        feedback += out[0]
        dead += out[1]
        if rng.random() < 0.3 or index in cuts:
            _commit(core, log)
        if index in cuts:  # a new owner: the state comes from the (compacted) changelog alone
            state = fold(_compacted(log) if rng.random() < 0.5 else log)
            assert state is not None
            resumed = JoinCore.from_state(state, ttl_ms=ttl)
            assert _same(resumed, core)
            core = resumed
    # events of one first-seen time may be ordered differently after a fold (compaction
    # forgets the order of first writes), so a flush may dead-letter ties in another order
    assert feedback == expected_feedback and sorted(map(repr, dead)) == sorted(map(repr, expected_dead))
    assert counters(core) == counters(whole)


def test_an_empty_changelog_is_no_state_and_a_foreign_record_is_refused() -> None:
    assert fold([]) is None
    with pytest.raises(DecodeError):
        fold([(b"e1", b"X-not-ours")])
    with pytest.raises(DecodeError):
        fold([(b"e1", b"P\x00")])  # a pending entry whose blob is corrupt


def test_entries_of_a_first_checkpoint_cut_before_its_header_are_no_state(caplog: pytest.LogCaptureFixture) -> None:
    """At least once, a commit's records are flushed, then its offsets committed; the header
    comes last. A joiner killed in its first flush leaves entries without a header: no state
    (those offsets were never committed), where refusing them kept its successor from ever
    restoring the partition."""
    from .test_joiner import Feed, features_of

    feed, core = Feed(), JoinCore(ttl_ms=10**9)
    core.add_many([feed("features", f"e{i}", features_of("x"), 1_000 + i) for i in range(20)])
    core.flush()
    log = [(key, value) for _partition, key, value in encode_changes(0, core.changes())]
    assert len(log) == 20
    assert fold(log) is None
    assert "20 changelog entries before any header" in caplog.text


def test_a_commit_writes_what_changed_not_the_state() -> None:
    """The checkpoint of the exactly-once joiner is incremental: after 50,000 pending events,
    a commit that follows 10 new ones writes 10 event records and one header, whose size
    does not grow with the pending events."""
    from .test_joiner import Feed, features_of

    feed, core = Feed(), JoinCore(ttl_ms=10**9)
    payload = features_of("x")
    for start in range(0, 50_000, 5_000):
        core.add_many([feed("features", f"e{i}", payload, 1_000 + i) for i in range(start, start + 5_000)])
        core.flush()
    first = encode_changes(0, core.changes()) + [encode_header(0, core.state(whole=False))]
    assert len(first) == 50_001
    small_header = len(first[-1][2] or b"")
    core.add_many([feed("features", f"n{i}", payload, 60_000 + i) for i in range(10)])
    core.flush()
    records = encode_changes(0, core.changes()) + [encode_header(0, core.state(whole=False))]
    assert len(records) == 11
    assert len(records[-1][2] or b"") <= small_header + 8  # the clock and positions only
    assert core.stats().pending == 50_010
