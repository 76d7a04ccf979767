"""One contract suite over every pure core of the roles, in the spirit of River's ``river/checks``.

The cores (``JoinCore``, ``LearnerCore`` row by row and in mini-batches, ``MonitorCore``,
``OnlineCore``, ``ScorerCore``, ``RetrainerCore``) are driven through one adapter each
(``cores.py``, ``cores_feedback.py``; the protocol, the seeded Agrawal stream and how to
add a core are in ``corecase.py``), and every check below runs over every core it applies
to:

1. duplicates dropped: re-delivered and re-sent records change no output (a stateless core:
   the same input gives the same output again);
2. replays identical: two fresh cores fed the same stream give the same outputs, here and
   in other processes (other ``PYTHONHASHSEED``: no dependence on set or hash order);
3. ``restore(snapshot())`` goes on like the uninterrupted core;
4. bad input comes back as rejections, never raised, and the good records around it give
   the outputs they give without it;
5. inputs are not mutated.

A check that cannot apply to a core is in :data:`SKIPS` with the reason: it shows in the
report as a skip, never as a silent omission.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .corecase import CoreCase, Output, chunks, is_rejection, run
from .cores import CASES, outputs_by_case

ROOT = Path(__file__).resolve().parents[2]

CHECKS = ("duplicates", "replay", "restore", "bad_input", "not_mutated")

SKIPS: dict[tuple[str, str], str] = {
    # no snapshot, by design: the state is rebuilt from the registry or the topics
    ("restore", "scorer"): "no state to snapshot: its serving plans are rebuilt from the registry",
    ("restore", "monitor"): "no snapshot: the windows live in memory and refill from the feedback "
                            "after the committed offsets (the metrics topic is the record)",
    ("restore", "online"): "no snapshot: a restart starts again from the champion (documented "
                           "limit of the online role)",
    ("restore", "retrainer"): "no snapshot: the feedback window is replayed from the topic on "
                              "assignment",
    # the role, not the core, refuses bad records here
    ("bad_input", "retrainer"): "the core takes validated records: the role holds feedback to "
                                "validate_features before add_feedback, and the runtime decodes "
                                "drift, metrics and requests by their schema",
    # nothing a core could change
    ("not_mutated", "joiner"): "its inputs are immutable (JoinInput of str, bytes and int): "
                               "nothing to mutate",
}


def cases_for(check: str) -> list[Any]:
    """Every case, those of :data:`SKIPS` marked skipped with their reason."""
    assert check in CHECKS
    return [
        pytest.param(case, id=case.name, marks=[pytest.mark.skip(reason=SKIPS[check, case.name])]
                     if (check, case.name) in SKIPS else [])
        for case in CASES
    ]


def batches_of(case: CoreCase) -> list[list[Any]]:
    stream: list[Any] = case.stream()
    return chunks(stream, case.batch_size)


def close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 (a batch that takes the one-by-one path rounds differently)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(close, a, b))
    return bool(a == b)


def test_skips_name_known_checks_and_cores() -> None:
    """A misspelt entry would skip nothing and go unnoticed."""
    names = {case.name for case in CASES}
    assert {check for check, _ in SKIPS} <= set(CHECKS)
    assert {name for _, name in SKIPS} <= names
    assert len(names) == len(CASES)


# -- 1. duplicates -------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("duplicates"))
def test_duplicates_dropped(case: CoreCase) -> None:
    """Every record fed again (re-delivered: same source; re-sent: same event at a new
    source) and every batch's records once more at the start of the next one (Kafka
    re-delivering an uncommitted tail) gives the outputs of feeding each record once."""
    batches = batches_of(case)
    if case.stateless:  # no per-event state: a repeated event is processed again, alike
        core = case.new()
        for batch in batches:
            first = case.feed(core, batch)
            assert case.feed(core, copy.deepcopy(batch)) == first
            single = case.feed(core, batch[:1])
            assert case.feed(core, [batch[0], copy.deepcopy(batch[0])]) == single * 2
        return
    once = run(case, case.new(), batches)
    doubled: list[list[Any]] = []
    previous: list[Any] = []
    n = 0
    for batch in batches:
        grown = [again for item in previous for again in case.redelivered(item)]
        for item in batch:
            grown += [item, *case.redelivered(item), *case.resent(item, n)]
            n += 1
        doubled.append(grown)
        previous = batch
    assert sum(map(len, doubled)) >= 2 * n  # the stream did repeat itself
    assert run(case, case.new(), doubled) == once


# -- 2. replays ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("replay"))
def test_replays_identical(case: CoreCase) -> None:
    """Two fresh cores fed the same stream give the same outputs (seeded randomness only)."""
    first = run(case, case.new(), batches_of(case))
    assert any(out for out in first[:-1])  # the stream made the core say something
    assert run(case, case.new(), batches_of(case)) == first


@pytest.fixture(scope="module")
def other_processes() -> list[dict[str, str]]:
    """Every case's outputs computed in two other processes, with their own hash seeds."""
    runs = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", "import tests.unit.cores as c; c.main()"], cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
            timeout=240, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout))
    return runs


@pytest.mark.parametrize("case", cases_for("replay"))
def test_replays_identical_in_other_processes(case: CoreCase,
                                              other_processes: list[dict[str, str]]) -> None:
    """The same outputs, to the bit and in the same order, under other hash seeds."""
    mine = outputs_by_case([case])[case.name]
    for theirs in other_processes:
        assert theirs[case.name] == mine


# -- 3. snapshot and restore ---------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("restore"))
def test_restore_of_a_snapshot_goes_on_alike(case: CoreCase) -> None:
    """Snapshot mid-stream, restore into a fresh core, feed the rest (after the last batch
    again, re-delivered and re-sent, where the snapshot keeps what dedupes it): the outputs
    of the uninterrupted core, bar the probe entries the adapter names in ``not_restored``."""
    batches = batches_of(case)
    half = len(batches) // 2
    going = case.new()
    for batch in batches[:half]:
        case.feed(going, batch)
    restored = case.restore(copy.deepcopy(case.snapshot(going)))
    rest = batches[half:]
    if case.snapshot_keeps_dedupe:
        last, n = batches[half - 1], (half - 1) * case.batch_size
        tail = [again for i, item in enumerate(last)
                for again in (*case.redelivered(item), *case.resent(item, n + i))]
        rest = [tail + rest[0], *rest[1:]]
    blank = run(case, case.new(), copy.deepcopy(rest))
    expected = run(case, going, copy.deepcopy(rest))
    got = run(case, restored, copy.deepcopy(rest))
    for outputs in (blank, expected, got):
        for key in case.not_restored:
            outputs[-1].pop(key)
    assert blank != expected  # the snapshot carries state that matters
    assert got == expected


# -- 4. bad input --------------------------------------------------------------------------


def _without(outputs: list[Output], sources: set[Any]) -> list[Output]:
    """The outputs without the rejections of ``sources`` (the probe, last, as it is)."""
    kept = [[o for o in out if not (is_rejection(o) and o[1] in sources)] for out in outputs[:-1]]
    return [*kept, outputs[-1]]


@pytest.mark.parametrize("case", cases_for("bad_input"))
def test_bad_input_rejected_not_raised(case: CoreCase) -> None:
    """Each bad input, inserted in the middle of a batch of good records, comes back as a
    rejection naming its source (once), is never raised, and leaves every other output (the
    good records' outputs, the final state) as it is without it."""
    stream, batches = case.stream(), batches_of(case)
    clean = run(case, case.new(), batches)
    middle, inside = len(batches) // 2, case.batch_size // 2
    bad = case.bad(stream, middle * case.batch_size + inside)
    assert bad
    problems = []
    for name, items in bad.items():
        sources = {case.source(item) for item in items}
        dirty = [list(batch) for batch in batches]
        dirty[middle][inside:inside] = copy.deepcopy(items)
        try:
            outputs = run(case, case.new(), dirty)
        except Exception as exc:  # the contract: never raised
            problems.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        rejected = [o[1] for out in outputs[:-1] for o in out
                    if is_rejection(o) and o[1] in sources]
        if not rejected:
            problems.append(f"{name}: not rejected")
        elif len(rejected) != len(set(rejected)):
            problems.append(f"{name}: rejected more than once: {rejected}")
        if not close(_without(outputs, sources), clean):
            problems.append(f"{name}: the other outputs changed")
    assert not problems, "\n".join(problems)


# -- 5. inputs not mutated -----------------------------------------------------------------


@pytest.mark.parametrize("case", cases_for("not_mutated"))
def test_inputs_not_mutated(case: CoreCase) -> None:
    """Every record passed in, good or bad, is equal afterwards to a deep copy taken before."""
    stream = case.stream()
    at = len(stream) // 2
    bad = [] if ("bad_input", case.name) in SKIPS else [
        item for items in case.bad(stream, at).values() for item in items]
    items = stream[:at] + bad + stream[at:]
    before = copy.deepcopy(items)
    run(case, case.new(), chunks(items, case.batch_size))
    assert items == before
