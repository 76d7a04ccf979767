"""RecentIds: FIFO eviction, the bound, repeats inside the window, forget, against a model."""

from __future__ import annotations

import collections
import copy
import pickle
import random
import uuid

import pytest

from riverops.dedupe import RecentIds, _hash
from riverops.schemas.errors import ConfigError


def test_the_oldest_id_is_forgotten_first_and_a_repeat_does_not_refresh_it() -> None:
    ids = RecentIds(3)
    assert [ids.add("m", k) for k in "abc"] == [True, True, True]
    assert ids.add("m", "a") is False  # a repeat: "a" stays the oldest
    assert ids.add("m", "d") is True
    assert [("m", k) in ids for k in "abcd"] == [False, True, True, True]
    assert ids.add("m", "e") and ("m", "b") not in ids and ("m", "c") in ids
    assert ids.add("m", "a") is True  # forgotten, so new again


def test_the_bound_holds_and_the_memory_is_allocated_once() -> None:
    ids = RecentIds(1000)
    before = ids.nbytes
    for n in range(10_000):
        ids.add("fraud", f"e{n}")
        assert len(ids) == min(n + 1, 1000)
    assert ids.nbytes == before == 8 * 2048 + 8 * 1000 + 4 * 1000
    assert sum(("fraud", f"e{n}") in ids for n in range(10_000)) == 1000


def test_repeats_inside_the_window_are_caught_and_older_ones_are_not() -> None:
    ids = RecentIds(5000)
    stream = [str(uuid.uuid4()) for _ in range(20_000)]
    rng = random.Random(7)
    caught = missed = 0
    for n, event_id in enumerate(stream):
        assert ids.add("fraud", event_id)
        if n >= 6000 and n % 10 == 0:  # re-deliver one id from inside the window, one from before it
            assert not ids.add("fraud", stream[n - rng.randrange(0, 4000)])
            caught += 1
            missed += ids.add("fraud", stream[n - 6000])  # 6000 ids ago: each asked once
    assert caught == missed == 1400


def test_group_and_key_are_one_pair() -> None:
    ids = RecentIds(10)
    ids.add("fraud", "e1")
    assert ("churn", "e1") not in ids and ("fraud", "e1") in ids
    assert ("fraude", "1") not in ids and ("fraud", "e1", "x") not in ids and "e1" not in ids


@pytest.mark.parametrize("capacity", [1, 5, 37, 64])
def test_agrees_with_an_ordered_dict_model(capacity: int) -> None:
    """Random adds, lookups and forgets over a small universe of ids: the small tables have
    long probe runs and wrap around, which is where moving entries back can go wrong."""
    rng = random.Random(capacity)
    ids, model = RecentIds(capacity), collections.OrderedDict[tuple[str, str], None]()
    for step in range(30_000):
        key = (rng.choice("abc"), f"e{rng.randrange(3 * capacity + 5)}")
        roll = rng.random()
        if roll < 0.001:
            groups = set(rng.sample("abc", rng.randint(1, 2)))
            dropped = [k for k in model if k[0] in groups]
            for k in dropped:
                del model[k]
            assert ids.forget(groups) == len(dropped)
        elif roll < 0.3:
            assert (key in ids) == (key in model), step
        else:
            new = key not in model
            assert ids.add(*key) == new, step
            if new:
                model[key] = None
                if len(model) > capacity:
                    model.popitem(last=False)
        assert len(ids) == len(model)
    assert all(k in ids for k in model)
    assert sum(1 for slot in ids._table if slot) == len(model)


def test_forget_keeps_the_order_of_the_other_groups() -> None:
    ids = RecentIds(4)
    for group, key in [("a", "1"), ("b", "1"), ("a", "2"), ("b", "2")]:
        ids.add(group, key)
    assert ids.forget(["a", "unknown"]) == 2 and ids.forget(["a"]) == 0
    ids.add("c", "1")
    ids.add("c", "2")
    ids.add("c", "3")  # full again: ("b", "1") is the oldest
    assert [(g, k) in ids for g, k in [("b", "1"), ("b", "2"), ("c", "1")]] == [False, True, True]


def test_copies_and_pickles_are_independent_and_the_hash_is_fixed() -> None:
    """The hash is the same in every process (pinned here: a checkpoint written by one
    version is read by the next), so a pickled core resumes with its ids."""
    ids = RecentIds(3)
    ids.add("m", "a")
    twin, thawed = copy.deepcopy(ids), pickle.loads(pickle.dumps(ids))
    twin.add("m", "b")
    assert ("m", "b") not in ids and ("m", "a") in twin and len(ids) == 1
    assert ("m", "a") in thawed and thawed.add("m", "c") and not thawed.add("m", "a")
    assert [_hash("fraud", "e1"), _hash("fraud", "e2")] == [11253973040820332910, 14644223553893271835]
    assert _hash("ab", "c") != _hash("a", "bc") and _hash("m", "\udc80") != _hash("m", "")
    with pytest.raises(ConfigError):
        RecentIds(0)
