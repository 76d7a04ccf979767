"""The ``online`` role: River's predict-then-learn over Kafka, features and labels in time order.

- :mod:`~riverops.roles.online.core`: :class:`OnlineCore`, the pure core (one model object
  predicts on features and learns from labels, no Kafka);
- :mod:`~riverops.roles.online.timeorder`: :class:`TimeOrderMerge`, the merge of several
  partitions into one time order;
- :mod:`~riverops.roles.online.role`: :class:`OnlineRole` on the worker runtime, and
  :func:`run_online`.
"""

from __future__ import annotations

from riverops.roles.online.core import OnlineCore, OnlineCoreStats, OnlineInput, OnlineResult
from riverops.roles.online.role import OnlineRole, OnlineStats, run_online
from riverops.roles.online.timeorder import Kind, Partition, TimeOrderMerge

__all__ = [
    "OnlineCore", "OnlineCoreStats", "OnlineInput", "OnlineResult", "Kind", "Partition",
    "TimeOrderMerge", "OnlineRole", "OnlineStats", "run_online",
]
