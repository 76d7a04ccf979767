"""A stable, unique transactional id per worker: ``GROUP.HOST.SLOT``.

A transactional id must be unique among live producers (two with one id fence each
other) and should be the same after a restart: the restarted worker's
``init_transactions`` then aborts the transaction its predecessor left open at once,
instead of read_committed readers waiting out ``transaction_timeout_ms``. The slot is the
lowest number whose lock file under ``state_dir/instances`` no live process holds (the
lock dies with its process, kill -9 too), so workers of one group on one host sharing a
state directory get 0, 1, 2... and a restarted one takes the slot its predecessor left.
Hosts are told apart by name (a pod's name in Kubernetes).

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     first, second = WorkerSlot.claim(pathlib.Path(d), "g"), WorkerSlot.claim(pathlib.Path(d), "g")
...     (first.slot, second.slot)
(0, 1)
"""

from __future__ import annotations

import fcntl
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["WorkerSlot"]

_MOST_SLOTS = 1024


@dataclass
class WorkerSlot:
    """A claimed slot; keep it (its lock) for as long as the producer lives."""

    group_id: str
    slot: int
    _lock: IO[bytes]

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}.{socket.gethostname()}.{self.slot}"

    @classmethod
    def claim(cls, state_dir: Path, group_id: str) -> WorkerSlot:
        directory = state_dir / "instances"
        directory.mkdir(parents=True, exist_ok=True)
        for slot in range(_MOST_SLOTS):
            lock = open(directory / f"{group_id}.{slot}.lock", "ab")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            return cls(group_id, slot, lock)
        raise RuntimeError(f"more than {_MOST_SLOTS} workers of {group_id} on this host?")

    def release(self) -> None:
        self._lock.close()
