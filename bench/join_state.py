"""Bytes per pending join item, by bench/join_memory.py in fresh child processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["measure_join_state"]

SCRIPT = Path(__file__).resolve().parent / "join_memory.py"


def measure_join_state(events: int, *, method: str = "rss", shape: str = "features+1",
                       timeout: float = 600.0) -> dict[str, Any]:
    """One join_memory child: ``events`` pending events of ``shape`` (features + champion
    prediction by default, i.e. what waits for a label in the loop above)."""
    run = subprocess.run([sys.executable, str(SCRIPT), "--child", str(events), shape, method, "0"],
                         check=True, capture_output=True, text=True, timeout=timeout,
                         cwd=SCRIPT.parents[1])
    result: dict[str, Any] = json.loads(run.stdout)
    return result
