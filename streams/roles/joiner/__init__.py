"""The joiner role: features, predictions and labels of one event in, one FeedbackEvent out.

- :mod:`~riverops.roles.joiner.core`: :class:`JoinCore`, the pure core (records in any
  order in, feedback and refusals out, no Kafka, no clock); its result types in
  :mod:`~riverops.roles.joiner.results`;
- :mod:`~riverops.roles.joiner.state`: the compact encoded state of a pending event;
- :mod:`~riverops.roles.joiner.spill`: the pending and emitted maps, their older entries
  on disk (a scratch SQLite file);
- :mod:`~riverops.roles.joiner.changelog`: the state in a compacted topic (its source of truth);
- :mod:`~riverops.roles.joiner.feedback`: a complete event decoded into its feedback;
- :mod:`~riverops.roles.joiner.snapshot`: the checksummed, pickle-free state format (the changelog header, a whole core in tests);
- :mod:`~riverops.roles.joiner.role`: :class:`JoinerRole` on the worker runtime
  (checkpoints, restore on assignment), and :func:`run_joiner`.
"""

from __future__ import annotations

from riverops.roles.joiner.core import (
    DEFAULT_TTL_MS,
    ITEM_OVERHEAD,
    KINDS,
    OUTCOMES,
    FlushResult,
    JoinCore,
    JoinInput,
    JoinStats,
    Kind,
    Outcome,
    Rejection,
    Source,
)
from riverops.roles.joiner.role import JoinerRole, JoinerStats, run_joiner

__all__ = [
    "JoinCore", "JoinStats", "FlushResult", "JoinInput", "Rejection", "Kind", "KINDS", "Outcome",
    "OUTCOMES", "Source", "DEFAULT_TTL_MS", "ITEM_OVERHEAD",
    "JoinerRole", "JoinerStats", "run_joiner",
]
