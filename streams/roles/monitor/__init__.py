"""The monitor role: rolling metrics, concept drift and data drift from feedback.

- :mod:`~riverops.roles.monitor.core`: :class:`MonitorCore`, the pure core (feedback in,
  drift alarms and metrics events out, no Kafka);
- :mod:`~riverops.roles.monitor.windows`: the River metric sets it keeps per window;
- :mod:`~riverops.roles.monitor.concept`: the concept drift detector on one signal;
- :mod:`~riverops.roles.monitor.drift`: the data drift detectors (PSI, KS);
- :mod:`~riverops.roles.monitor.signals`: what concept drift watches per task (the error,
  each class's error, the log-loss) and :class:`ConceptWatch`, one detector per signal;
- :mod:`~riverops.roles.monitor.role`: :class:`MonitorRole` on the worker runtime, and
  :func:`run_monitor`.
"""

from __future__ import annotations

from riverops.roles.monitor.core import DEFAULT_DATA_DRIFT, Key, KeyStatus, MonitorCore, infer_task
from riverops.roles.monitor.drift import (
    ConceptAlarm,
    ConceptDriftDetector,
    DataAlarm,
    DataDriftMonitor,
    DataDriftOptions,
    DetectorName,
    Signal,
)
from riverops.roles.monitor.role import MonitorRole, MonitorStats, run_monitor
from riverops.roles.monitor.signals import DEFAULT_SIGNALS, ConceptWatch
from riverops.roles.monitor.windows import METRIC_NAMES

__all__ = [
    "MonitorCore", "KeyStatus", "Key", "infer_task", "METRIC_NAMES", "DEFAULT_DATA_DRIFT",
    "ConceptAlarm", "ConceptDriftDetector", "DataAlarm", "DataDriftMonitor", "DataDriftOptions",
    "DetectorName", "MonitorRole", "MonitorStats", "run_monitor", "Signal", "DEFAULT_SIGNALS",
    "ConceptWatch",
]
