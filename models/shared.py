"""One copy of each artifact's bytes for the registries of one process.

A ``riverops worker all`` process runs a registry per role (each folds the registry topic
through its own follower), and each would otherwise hold its own copy of every artifact
it keeps: four copies of a champion that may weigh megabytes (an ARF of 5 trees: 2.8 MB).
:class:`SharedArtifacts` interns the bytes by their sha256, so the registries of a process
hold one object per artifact; bytes that claim a known hash but differ from the copy held
are not interned (the loader's hash and signature checks refuse them later). An artifact
no registry keeps any more is dropped at the next :meth:`~SharedArtifacts.prune`, which the
registries call after each release pass.

Examples
--------
>>> shared = SharedArtifacts()
>>> a, b = bytes(b"model"), bytes(bytearray(b"model"))
>>> shared.intern("0" * 64, a) is shared.intern("0" * 64, b)
True
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

__all__ = ["SharedArtifacts", "PROCESS_ARTIFACTS"]


class SharedArtifacts:
    """sha256 -> the one bytes object of that artifact, for the registries that joined."""

    def __init__(self) -> None:
        self._bytes: dict[str, bytes] = {}
        self._holders: weakref.WeakKeyDictionary[object, Callable[[], frozenset[str]]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def join(self, holder: object, held: Callable[[], frozenset[str]]) -> None:
        """Count ``holder`` among the users; ``held`` says which hashes it keeps (called
        from any thread: it must copy atomically, e.g. ``frozenset`` of a set)."""
        with self._lock:
            self._holders[holder] = held

    def intern(self, sha256: str, data: bytes) -> bytes:
        """The process's copy of the artifact ``sha256`` (``data`` itself, the first time)."""
        with self._lock:
            known = self._bytes.setdefault(sha256, data)
        return known if known is data or known == data else data

    def prune(self) -> int:
        """Drop the bytes no holder keeps; how many were dropped."""
        with self._lock:
            used = frozenset().union(*(held() for held in list(self._holders.values())))
            gone = [sha for sha in self._bytes if sha not in used]
            for sha in gone:
                del self._bytes[sha]
        return len(gone)

    def __len__(self) -> int:
        return len(self._bytes)


PROCESS_ARTIFACTS = SharedArtifacts()
"""The one a worker process's registries share (riverops.runtime)."""
