"""Where a worker's runtime loop spends its wall time: py-spy attached to worker processes.

py-spy samples from outside (``--nonblocking``: the worker is never paused) every Python
thread, waiting ones too (``--idle``), so a blocking librdkafka call such as
``commit_transaction`` shows as the Python frame that made it. Only the samples inside the
runtime loop (``Runtime.run``) are kept, and each is put in the first bucket of
:data:`BUCKETS` whose frame it holds.
"""

from __future__ import annotations

import linecache
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.harness import Worker

__all__ = ["BUCKETS", "available", "attach", "buckets"]

BUCKETS: tuple[tuple[str, str], ...] = (
    ("commit_transaction", "commit_transaction("),
    ("send_offsets_to_transaction", "send_offsets_to_transaction("),
    ("consumer_group_metadata", "consumer_group_metadata("),
    ("begin_transaction", "begin_transaction("),
    ("changelog produce", "TransactionalOutbox.send_raw"),
    ("changelog encode", ".changelog"),
    ("role offsets (state made durable)", ".offsets"),
    ("flush outputs", "Outbox.flush"),
    ("commit offsets", "commit@clients.py"),
    ("consume (wait for input)", "Runtime._consume"),
    ("decode + handle", "Runtime._handle"),
    ("encode + produce", "Runtime._send"),
    ("registry", "Runtime._follow"),
    ("tick", ".tick"),
)
"""(bucket, what a frame of the sample holds): a call, when it ends with ``(``, found in the
source line a frame is at (librdkafka's calls have no frame of their own: the line that
makes one does); else a frame name (starting with a dot: any class's method; ``name@file``:
that function of that file). Checked in this order; a loop sample in none is ``other``."""

_LOOP = "Runtime.run"
ROOT = Path(__file__).resolve().parents[1]


def available() -> str | None:
    """The py-spy executable (next to this interpreter, else on PATH), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def attach(directory: Path, label: str, *, rate: int = 100,
           native: bool = False) -> Callable[[list[Worker]], Callable[[], None]]:
    """A hook for the benches' ``attach``: py-spy on every worker while the clock runs;
    raw stacks to ``directory/label-ROLE.txt`` (with ``native``, C frames too: librdkafka's
    own threads; py-spy then pauses the worker at each sample)."""
    binary = available()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    directory.mkdir(parents=True, exist_ok=True)

    def start(workers: list[Worker]) -> Callable[[], None]:
        spies = [subprocess.Popen(
            [binary, "record", "--pid", str(w.process.pid), "--rate", str(rate), "--idle",
             *(["--native"] if native else ["--nonblocking"]), "--format", "raw",
             "-o", str(directory / f"{label}-{w.role}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for w in workers]

        def stop() -> None:
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            for spy in spies:
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait(10)
        return stop
    return start


def _frame(text: str) -> tuple[str, str, str]:
    """``'name (path:line)'`` -> (name, path, the source line it is at; '' when not found)."""
    name, _, rest = text.partition(" (")
    path, _, line = rest.rstrip(")").rpartition(":")
    source = ""
    if line.isdigit() and path:
        found = Path(path) if Path(path).is_absolute() else ROOT / path
        source = linecache.getline(str(found), int(line))
    return name, path, source


def _holds(frames: list[tuple[str, str, str]], pattern: str) -> bool:
    if pattern.endswith("("):  # the call itself, not a longer name ending alike (_commit_transaction)
        called = re.compile(rf"(?<![\w]){re.escape(pattern)}")
        return any(called.search(source) for _, _, source in frames)
    if pattern.startswith("."):
        return any(name.endswith(pattern) for name, _, _ in frames)
    function, _, file = pattern.partition("@")
    return any(name == function and path.endswith(file) for name, path, _ in frames)


def buckets(raw: Path) -> dict[str, float]:
    """Share of the runtime loop's samples per bucket, largest first (empty if none)."""
    linecache.checkcache()  # the sources may have changed since an earlier call
    tally: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        loop = next((i for i, (name, _, _) in enumerate(frames) if name == _LOOP), None)
        if not count.isdigit() or loop is None:
            continue
        inner = frames[loop + 1:]
        tally[next((bucket for bucket, pattern in BUCKETS if _holds(inner, pattern)), "other")] += int(count)
    total = sum(tally.values())
    return {name: n / total for name, n in tally.most_common()} if total else {}
