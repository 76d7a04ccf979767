"""CountWindow against river.utils.Rolling over a MetricSet, on real streams.

Rolling folds every outcome in as it comes (update the new, revert the oldest);
CountWindow folds them in when read. Read after fewer than its size of new outcomes it
must give Rolling's values bit for bit; read after its size or more, the window was
replaced and it builds the set afresh: the same values to rounding (River's means
reverted many times against the window's own), and to rounding from then on.
"""

from __future__ import annotations

import random

import pytest
from river import utils

from riverops.roles.monitor.windows import CountWindow, MetricSet
from riverops.schemas.events import Task

from .test_windows import STREAMS, assert_same


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_it_reads_as_rolling_does(task: Task) -> None:
    rng = random.Random(5)
    rolling = utils.Rolling(MetricSet, window_size=300, task=task)
    window = CountWindow(task, 300)
    since, exact, fresh, rebuilt = 0, 0, 0, False
    for i, outcome in enumerate(STREAMS[task](6_000, seed=2)):
        rolling.update(outcome)
        window.update(outcome)
        since += 1
        gap = 2_000 <= i < 3_000 or 4_000 <= i < 4_299  # no read for 1,000 outcomes, then for 300
        if (rng.random() < 0.02 and not gap) or i in (3_000, 4_299):
            got, want = window.metrics(), rolling.obj
            assert got.n == want.n
            rebuilt = rebuilt or since >= 300
            if not rebuilt:
                assert got.values() == want.values()
                exact += 1
            else:
                assert_same(got.values(), want.values())
                fresh += 1
            since = 0
    assert exact > 30 and fresh > 30


def test_an_empty_window_and_one_read_twice() -> None:
    window = CountWindow("binary", 10)
    assert window.metrics().n == 0 and window.metrics().values() == MetricSet("binary").values()
    outcomes = list(STREAMS["binary"](25, seed=1))
    for outcome in outcomes:
        window.update(outcome)
    first = window.metrics().values()
    assert window.metrics().values() == first and first["window_samples"] == 10.0
    reference = MetricSet("binary")
    for outcome in outcomes[-10:]:
        reference.update(outcome)
    assert first == reference.values()
