"""Local state files of stateful workers, written so that a crash never leaves half a file.

A worker's durable state is small (a join snapshot, a learner's resume point) and lives
under ``RIVEROPS_STATE_DIR``; :func:`write_atomically` writes a temporary file, fsyncs it
and renames it over the old one, so a reader sees the old file or the new, never a mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_atomically", "read_json", "write_json"]


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; None when there is no such file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_json(path: Path, value: Any) -> None:
    write_atomically(path, json.dumps(value, sort_keys=True).encode())
