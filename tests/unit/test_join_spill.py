"""Join state larger than memory: a core that spills to its SQLite file joins exactly like
one that keeps everything in memory, restores from the changelog a chunk at a time, and
leaves no file behind."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from riverops.roles.joiner import JoinCore, JoinInput
from riverops.roles.joiner.changelog import Folding, encode_changes, encode_header, fold
from riverops.roles.joiner.spill import BLOBS, TIMES, SpillFile, SpillMap

from .test_joiner import Feed, counters, features_of, label_of, prediction_of, run, uninterrupted


def _on_disk(core: JoinCore) -> int:
    stats = core.stats()
    return stats.pending_on_disk + stats.done_on_disk


@pytest.mark.parametrize(("seed", "memory_events"), [(1, 1), (2, 7), (3, 200)])
def test_a_spilling_core_joins_exactly_like_one_in_memory(tmp_path: Path, seed: int, memory_events: int) -> None:
    ttl = 10_000
    _, batches, whole, expected_feedback, expected_dead = uninterrupted(seed, ttl)
    core = JoinCore(ttl_ms=ttl, spill_to=tmp_path / "p0.sqlite", memory_events=memory_events)
    feedback, dead, most = [], [], 0
    for batch in batches:
        out = run(core, [batch])
        feedback += out[0]
        dead += out[1]
        most = max(most, _on_disk(core))
        assert core.stats().pending - core.stats().pending_on_disk <= memory_events * 1.1 + len(batch)
    assert most > 0  # the file was used, or this test proves nothing
    assert feedback == expected_feedback and dead == expected_dead
    assert counters(core) == counters(whole)
    assert dict(core.state(whole=True).pending) == dict(whole.state(whole=True).pending)
    assert core.snapshot() == whole.snapshot()  # same entries in the same order
    core.close()
    assert not (tmp_path / "p0.sqlite").exists()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_spilling_core_restores_from_the_changelog_in_chunks(tmp_path: Path, seed: int) -> None:
    """A changelog folded into a spilling core a chunk at a time is the state the fold in
    memory gives, and both go on to the same outputs."""
    ttl = 10_000
    rng, batches, _, _, _ = uninterrupted(seed, ttl)
    core, log = JoinCore(ttl_ms=ttl), []
    cut = len(batches) // 2
    for batch in batches[:cut]:
        run(core, [batch])
        if rng.random() < 0.3:
            records = encode_changes(0, core.changes()) + [encode_header(0, core.state(whole=False))]
            log += [(key, value) for _partition, key, value in records]
    records = encode_changes(0, core.changes()) + [encode_header(0, core.state(whole=False))]
    log += [(key, value) for _partition, key, value in records]

    state = fold(log)
    assert state is not None and len(state.pending) > 100
    in_memory = JoinCore.from_state(state, ttl_ms=ttl)
    spilling = JoinCore(ttl_ms=ttl, spill_to=tmp_path / "p0.sqlite", memory_events=10)
    folding = Folding(spilling)
    for start in range(0, len(log), 97):
        folding.add(log[start:start + 97])
    assert folding.finish() and folding.records == len(log)
    assert spilling.stats().pending_on_disk == len(state.pending)  # a restore goes to disk
    assert counters(spilling) == counters(in_memory)
    assert dict(spilling.state(whole=True).pending) == dict(state.pending)
    assert dict(spilling.state(whole=True).done) == dict(state.done)
    (feedback, dead), (expected_feedback, expected_dead) = run(spilling, batches[cut:]), run(in_memory, batches[cut:])
    # events of one first-seen time may expire in another order after a fold (as in
    # test_joiner_changelog): their dead letters are compared as a set
    assert feedback == expected_feedback and sorted(map(repr, dead)) == sorted(map(repr, expected_dead))
    assert counters(spilling) == counters(in_memory)
    spilling.close()


def test_a_spilling_core_snapshot_restores_into_a_spilling_core(tmp_path: Path) -> None:
    ttl = 10_000
    _, batches, whole, expected_feedback, _ = uninterrupted(4, ttl)
    core = JoinCore(ttl_ms=ttl, spill_to=tmp_path / "a.sqlite", memory_events=5)
    half = len(batches) // 2
    feedback = run(core, batches[:half])[0]
    snapshot = core.snapshot()
    core.close()
    core = JoinCore.restore(snapshot, ttl_ms=ttl, spill_to=tmp_path / "b.sqlite", memory_events=5)
    assert _on_disk(core) > 0
    feedback += run(core, batches[half:])[0]
    assert feedback == expected_feedback and counters(core) == counters(whole)
    core.close()


def test_a_new_core_deletes_what_a_crashed_one_left(tmp_path: Path) -> None:
    path = tmp_path / "p0.sqlite"
    path.write_bytes(b"left by a kill -9")
    core = JoinCore(spill_to=path, memory_events=3)
    assert core.stats().pending == 0 and path.exists()
    core.close()
    core.close()  # twice is fine: a revoke after a stop
    assert not path.exists()


def test_an_old_owner_closing_late_leaves_the_new_owners_file(tmp_path: Path) -> None:
    """Two joiners of a group may share a state directory: the one that lost a partition
    may close its core after the new owner made its file at the same path."""
    path = tmp_path / "p0.sqlite"
    old = JoinCore(spill_to=path, memory_events=3)
    new = JoinCore(spill_to=path, memory_events=3)
    old.close()
    assert path.exists()
    new.close()
    assert not path.exists()


def test_spill_map_matches_a_dict_in_time_order(tmp_path: Path) -> None:
    """Random puts (new keys at a time that only grows, updates at the same time),
    discards, spills and expiries: always the entries of a reference dict, in time order."""
    rng = random.Random(5)
    file = SpillFile(tmp_path / "m.sqlite")
    blobs = SpillMap(BLOBS, file=file, table="blobs", memory_items=4)
    times = SpillMap(TIMES, file=file, table="times", memory_items=4)
    expected_blobs: dict[str, bytes] = {}
    expected_times: dict[str, int] = {}
    now, most = 0, [0, 0]
    for step in range(3_000):
        now += rng.randrange(3)
        key = f"k{rng.randrange(400)}"
        action = rng.random()
        if action < 0.45:
            if key in expected_blobs:  # an update keeps the time at the blob's head
                value = expected_blobs[key][:8] + rng.randbytes(rng.randrange(5))
            else:
                value = now.to_bytes(8, "little", signed=True) + rng.randbytes(rng.randrange(5))
            blobs.put(key, value)
            expected_blobs[key] = value
            if key not in expected_times:
                times.put(key, now)
                expected_times[key] = now
        elif action < 0.7:
            blobs.discard(key)
            times.discard(key)
            expected_blobs.pop(key, None)
            expected_times.pop(key, None)
        elif action < 0.75:
            before = now - rng.randrange(50)
            gone = blobs.pop_older(before)
            assert gone == [(k, v) for k, v in expected_blobs.items() if BLOBS.order(v) < before]
            for k, _ in gone:
                del expected_blobs[k]
            assert [k for k, _ in times.pop_older(before)] == [k for k, t in expected_times.items() if t < before]
            expected_times = {k: t for k, t in expected_times.items() if t >= before}
        else:
            blobs.spill()
            times.spill()
        assert blobs.get(key) == expected_blobs.get(key) and times.get(key) == expected_times.get(key)
        most = [max(most[0], blobs.on_disk), max(most[1], times.on_disk)]
        if step % 50 == 0:
            assert dict(blobs.items()) == expected_blobs and list(times.items()) == list(expected_times.items())
            assert len(blobs) == len(expected_blobs) and len(times) == len(expected_times)
            orders = [BLOBS.order(v) for v in blobs.values()]
            assert orders == sorted(orders)
            assert blobs.stored_bytes() == sum(len(k) + len(v) for k, v in expected_blobs.items())
    assert min(most) > 20  # the file was used
    file.close()


DAY = 24 * 3600 * 1000


def _thirty_days(seed: int) -> tuple[list[JoinInput], dict[str, int]]:
    """Sixty days of stream time compressed: an event every 4 minutes, its features and
    champion prediction at its time, its label 1 to 29.5 days later (75%), 30.5 to 40 days
    later (10%: too late for a 30-day TTL), or never (15%); records in time order. Beside
    it, the counts a direct computation gives for a 30-day TTL."""
    rng = random.Random(seed)
    feed, arrivals = Feed(), []
    late_by: dict[str, tuple[int, int | None]] = {}
    for index in range(60 * 360):
        event_id, t0 = f"e{index}", index * 240_000
        arrivals += [(t0, 0, "features", event_id, features_of(event_id, t0)),
                     (t0, 1, "prediction", event_id, prediction_of(event_id, t0))]
        draw = rng.random()
        delay = (None if draw < 0.15 else int(rng.uniform(1, 29.5) * DAY) if draw < 0.9
                 else int(rng.uniform(30.5, 40) * DAY))
        if delay is not None:
            arrivals.append((t0 + delay, 2, "label", event_id, label_of(event_id, t0 + delay)))
        late_by[event_id] = (t0, delay)
    arrivals.sort(key=lambda a: (a[0], a[1]))
    end, ttl = (60 * 360 - 1) * 240_000, 30 * DAY  # the last features' time: the clock stops there
    joined = sum(1 for t0, d in late_by.values() if d is not None and (d <= 29.5 * DAY or t0 >= end - ttl))
    labelled_too_late = sum(1 for d in late_by.values() if d[1] is not None) - joined
    unlabelled_expired = sum(1 for t0, d in late_by.values() if d is None and t0 < end - ttl)
    unlabelled_pending = sum(1 for _, d in late_by.values() if d is None) - unlabelled_expired
    expected = {"joined": joined, "expired_unlabelled": unlabelled_expired + labelled_too_late,
                "orphan_labels": 0,  # a late label waits 30 days of a clock that stops 30 days after it
                "pending": unlabelled_pending + labelled_too_late, "invalid": 0, "duplicates": 0}
    return [feed(kind, event_id, payload, t) for t, _, kind, event_id, payload in arrivals], expected


@pytest.mark.parametrize("memory_events", [0, 500])
def test_a_30_day_ttl_over_a_compressed_stream_gives_the_direct_counts(tmp_path: Path, memory_events: int) -> None:
    records, expected = _thirty_days(3)
    spill = {"spill_to": tmp_path / "p0.sqlite", "memory_events": memory_events} if memory_events else {}
    core = JoinCore(ttl_ms=30 * DAY, **spill)  # type: ignore[arg-type]
    most = 0
    for start in range(0, len(records), 100):  # a flush every ~2.7 h of stream time at most
        run(core, [records[start:start + 100]])
        most = max(most, _on_disk(core))
    stats = core.stats()
    got = {name: getattr(stats, name) for name in expected}
    print(f"\n30-day TTL, {len(records)} records, memory_events {memory_events}: {got}, most on disk {most}")
    assert got == expected
    assert expected["joined"] > 15_000 and expected["expired_unlabelled"] > 2_000 and expected["pending"] > 2_000
    assert (most > 5_000) == bool(memory_events)  # the spilling core held most of it on disk
    core.close()
