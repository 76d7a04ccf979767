"""The monitor's pure core: feedback events in, drift alarms and rolling metrics out.

Each prediction made for a labelled event is one *outcome* of its (model, version,
variant). :class:`MonitorCore` keeps, per such key, River metrics over the last
``window_size`` outcomes and over the last ``time_window`` seconds of label time, the
number of outcomes seen, and a concept drift detector on each signal of its task
(:mod:`~riverops.roles.monitor.signals`: by default the positive class's error and the
log-loss for binary models); per model, data drift of the features. Only the concept
alarms that pass the "got worse" rule (:class:`~riverops.roles.monitor.concept.ConceptDriftDetector`:
a rise relative to the signal's own level, by enough standard errors) come out, each
naming its signal. Re-delivered feedback (same model and event_id) is counted once.

Metric choice needs the model's task: given in ``tasks``, else inferred from the first
label seen (bool -> "binary", str -> "multiclass", number -> "regression").
Binary: the positive class is ``True``; its score is ``scores["True"]`` (or "1", "1.0"), else
``1 - scores["False"]`` (or "0", "0.0"), else unknown (ROC AUC and log loss skip it); the
predicted class is ``prediction``, else score >= 0.5. Labels may be bools, 0/1 numbers or
the strings true/false/1/0. Multiclass classes are ``str(label)``, as the score keys are.

Examples
--------
>>> from datetime import UTC, datetime
>>> core = MonitorCore(data_drift=None)
>>> made = {"version": 1, "variant": "champion", "prediction": True,
...         "scores": {"True": 0.9, "False": 0.1}}
>>> t = datetime(2024, 1, 1, tzinfo=UTC)
>>> record = {"event_id": "e1", "model": "fraud", "entity_id": "c", "event_time": t,
...           "features": {}, "label": True, "label_time": t, "predictions": [made]}
>>> core.update([record, record])
[]
>>> [(e["window_kind"], e["samples"], e["metrics"]["accuracy"]) for e in core.metrics_events(t)]
[('count', 1, 1.0), ('time', 1, 1.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from riverops.dedupe import RecentIds
from riverops.roles.monitor.drift import (
    DataDriftMonitor,
    DataDriftOptions,
    DetectorName,
    Signal,
)
from riverops.roles.monitor.segments import SegmentOptions, Segments, SegmentStatus
from riverops.roles.monitor.signals import DEFAULT_SIGNALS, ConceptWatch, check_signals
from riverops.roles.monitor.windows import CountWindow, Outcome, TimeWindow, outcome_of
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import Task, Variant, WindowKind
from riverops.schemas.validation import check_feature_map
from riverops.sections import MonitorSettings

__all__ = ["MonitorCore", "KeyStatus", "Key", "infer_task", "DEFAULT_DATA_DRIFT"]

Key = tuple[str, int, Variant]
"""model, version, variant"""

DEFAULT_DATA_DRIFT = DataDriftOptions()


def infer_task(label: Any) -> Task:
    """The task a label implies when none is configured.

    >>> infer_task(True), infer_task("cat"), infer_task(3.5)
    ('binary', 'multiclass', 'regression')
    """
    if isinstance(label, bool):
        return "binary"
    if isinstance(label, str):
        return "multiclass"
    return "regression"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """Current state of one (model, version, variant), for gauges and the status view."""

    model: str
    version: int
    variant: Variant
    task: Task
    samples: int
    unscored: int
    metrics: Mapping[WindowKind, Mapping[str, float]]
    detector: DetectorName
    drift_alarms: int
    """concept alarms acted on (published), over every signal"""
    ignored_alarms: int
    """concept alarms that were falls or too small a rise"""
    signals: tuple[Signal, ...] = ()
    segments: tuple[SegmentStatus, ...] = ()
    """per value of each ``segment_by`` feature: its metrics over its count window"""


class _KeyState:
    def __init__(self, task: Task, core: MonitorCore) -> None:
        self.task = task
        self.samples = 0
        self.unscored = 0
        self.count = CountWindow(task, core.window_size)
        self.time = TimeWindow(core.time_window, task)
        self.watch = ConceptWatch(task, core.signals[task], detector=core.detector,
                                  params=core.detector_params,
                                  min_relative_rise=core.min_relative_rise, rise_z=core.rise_z)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0  # epoch milliseconds, as timestamp-millis carries
    raise InvalidEventError(f"not a timestamp: {value!r}")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class MonitorCore:
    """Rolling metrics, concept drift and data drift from feedback events; no Kafka.

    Deduplication remembers the last ``dedupe_size`` (model, event_id) pairs: Kafka
    re-delivers the uncommitted tail after a restart or rebalance, which is far shorter.
    ``data_drift=None`` turns data drift off. Data drift alarms carry the version of the
    latest champion prediction seen for the model (else of the latest prediction, else 1).
    Alarm times are the label time of the record that raised them. ``signals`` (task ->
    signals, the defaults for a task left out), ``min_relative_rise`` and ``rise_z`` are
    the concept-drift options of :class:`~riverops.sections.MonitorSettings`.
    """

    def __init__(
        self,
        *,
        tasks: Mapping[str, Task] | None = None,
        window_size: int = 1000,
        time_window: float = 300.0,
        detector: DetectorName = "ADWIN",
        detector_params: Mapping[str, Any] | None = None,
        signals: Mapping[Task, Sequence[Signal]] | None = None,
        min_relative_rise: float = 0.2,
        rise_z: float = 3.0,
        data_drift: DataDriftOptions | None = DEFAULT_DATA_DRIFT,
        dedupe_size: int = 200_000,
        segments: SegmentOptions | None = None,
    ) -> None:
        if window_size < 1 or time_window <= 0 or dedupe_size < 1:
            raise ConfigError("window_size, time_window and dedupe_size must be positive")
        self.tasks: dict[str, Task] = dict(tasks or {})
        self.window_size = window_size
        self.time_window = time_window
        self.detector: DetectorName = detector
        self.detector_params = dict(detector_params or {})
        self.min_relative_rise = min_relative_rise
        self.rise_z = rise_z
        chosen = {**DEFAULT_SIGNALS, **(signals or {})}
        # fail fast on bad options; a regression task under DDM only when such a model comes
        self.signals: dict[Task, tuple[Signal, ...]] = {
            task: check_signals(task, chosen[task], "ADWIN" if task == "regression" else detector)
            for task in DEFAULT_SIGNALS
        }
        ConceptWatch("binary", self.signals["binary"], detector=detector, params=self.detector_params,
                     min_relative_rise=min_relative_rise, rise_z=rise_z)
        self.data_drift = data_drift
        self.duplicates = 0
        self.watermark: datetime | None = None
        self.dedupe_size = dedupe_size
        self._seen = RecentIds(dedupe_size)
        self._keys: dict[Key, _KeyState] = {}
        self._data: dict[str, DataDriftMonitor] = {}
        self._versions: dict[str, tuple[int, Variant]] = {}
        self.segments = Segments(segments) if segments is not None and segments.features else None

    @classmethod
    def from_settings(cls, section: MonitorSettings, *, tasks: Mapping[str, Task] | None = None) -> MonitorCore:
        """The core a monitor worker runs with ``settings.monitor`` (data drift off when
        ``section.data_drift.enabled`` is false).

        >>> MonitorCore.from_settings(MonitorSettings(data_drift={"enabled": False})).data_drift is None
        True
        """
        drift = section.data_drift
        options = DataDriftOptions(
            reference_size=drift.reference_size, window_size=drift.window_size, every=drift.every,
            min_seconds=drift.min_seconds,
            psi_threshold=drift.psi_threshold, ks_threshold=drift.ks_threshold,
        ) if drift.enabled else None
        signals: dict[Task, Sequence[Signal]] = {
            "binary": section.binary_signals, "multiclass": section.multiclass_signals,
            "regression": section.regression_signals,
        }
        return cls(tasks=tasks, window_size=section.window_size, time_window=section.time_window,
                   detector=section.detector, signals=signals,
                   min_relative_rise=section.min_relative_rise, rise_z=section.rise_z,
                   data_drift=options, dedupe_size=section.dedupe_size,
                   segments=SegmentOptions(section.segment_by, section.segment_max_values,
                                           section.window_size))

    def update(
        self,
        feedback_records: Iterable[Mapping[str, Any]],
        *,
        on_invalid: Callable[[Mapping[str, Any], InvalidEventError], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Fold a batch of FeedbackEvent dicts in; return the DriftEvent dicts it raised.

        A record that breaks the contract (features included: the rule of
        :func:`~riverops.schemas.validation.check_feature_map`, as the scorer's) raises
        InvalidEventError before it changes any state, or, with ``on_invalid``, is handed
        to it (e.g. to dead-letter) and skipped.
        """
        events: list[dict[str, Any]] = []
        for record in feedback_records:
            try:
                events.extend(self._update_one(record))
            except InvalidEventError as exc:
                if on_invalid is None:
                    raise
                on_invalid(record, exc)
        return events

    def _update_one(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(record, Mapping):
            raise InvalidEventError(f"a {type(record).__name__}, not a feedback record")
        model, event_id = record.get("model"), record.get("event_id")
        if not isinstance(model, str) or not model or not isinstance(event_id, str) or not event_id:
            raise InvalidEventError("feedback without a model name or event_id")
        if (model, event_id) in self._seen:
            self.duplicates += 1
            return []
        features = record.get("features") or {}
        check_feature_map(features)  # the scorer's rule: what it refuses is not measured either
        label, seconds = record.get("label"), _epoch(record.get("label_time"))
        if label is None:
            raise InvalidEventError(f"feedback {event_id} has no label")
        task = self.tasks.get(model) or infer_task(label)
        if task == "regression" and self.detector == "DDM":
            raise ConfigError(f"model {model}: DDM takes 0/1 errors, not regression errors")
        made = [(p, outcome_of(task, label, p)) for p in record.get("predictions") or ()]
        # validated: from here on the record changes state
        self._seen.add(model, event_id)  # the oldest id goes when it is full
        self.tasks.setdefault(model, task)
        detected_at = _utc(seconds)
        if self.watermark is None or detected_at > self.watermark:
            self.watermark = detected_at
        drift = [e for p, o in made for e in self._outcome_in(model, p, o, seconds, features)]
        for p, _ in made:  # data drift is reported against the champion, else the latest
            current = self._versions.get(model)
            if p["variant"] == "champion" or current is None or current[1] != "champion":
                self._versions[model] = (int(p["version"]), p["variant"])
        if self.data_drift is not None:
            monitor = self._data.setdefault(model, DataDriftMonitor(self.data_drift))
            version, variant = self._versions.get(model, (1, "champion"))
            for alarm in monitor.update(features, seconds):
                drift.append(
                    {
                        "model": model, "version": version, "variant": variant,
                        "kind": "data", "detector": alarm.detector, "signal": None,
                        "statistic": alarm.statistic, "threshold": alarm.threshold,
                        "feature": alarm.feature, "samples": alarm.samples,
                        "detected_at": detected_at,
                    }
                )
        return drift

    def _outcome_in(
        self, model: str, made: Mapping[str, Any], outcome: Outcome | None, seconds: float,
        features: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        key: Key = (model, int(made["version"]), made["variant"])
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(self.tasks[model], self)
        if outcome is None:
            state.unscored += 1
            return []
        state.samples += 1
        state.count.update(outcome)
        state.time.update(seconds, outcome)
        if self.segments is not None:
            self.segments.update(key, state.task, features, outcome)
        return [
            {
                "model": model, "version": key[1], "variant": key[2], "kind": "concept",
                "detector": alarm.detector, "signal": alarm.signal,
                "statistic": alarm.error_after, "threshold": alarm.error_before,
                "feature": None, "samples": state.samples, "detected_at": _utc(seconds),
            }
            for alarm in state.watch.update(outcome) if alarm.worse
        ]

    def forget(self, models: set[str]) -> None:
        """Drop everything known about ``models`` (their feedback partition went to another
        monitor, which now owns them)."""
        if not models:
            return
        self._keys = {key: state for key, state in self._keys.items() if key[0] not in models}
        for model in models:
            self._data.pop(model, None)
            self._versions.pop(model, None)
        self._seen.forget(models)
        if self.segments is not None:
            self.segments.forget(models)

    def sizes(self) -> dict[str, int]:
        """Entries of its bounded structures: the dedupe ring, the (model, version, variant) keys."""
        return {"monitor_dedupe_ids": len(self._seen), "monitor_window_keys": len(self._keys)}

    def status(self, now: datetime | None = None) -> list[KeyStatus]:
        """Every key's current values; ``now`` (if given) first expires the time windows."""
        rows = []
        for (model, version, variant), state in sorted(self._keys.items()):
            if now is not None:
                state.time.expire(_epoch(now))
            windows: dict[WindowKind, Mapping[str, float]] = {}
            counted = state.count.metrics()
            if counted.n:
                windows["count"] = counted.values()
            if state.time.obj.n:
                windows["time"] = state.time.obj.values()
            watch = state.watch
            segments = self.segments.rows((model, version, variant)) if self.segments else []
            rows.append(KeyStatus(model, version, variant, state.task, state.samples,
                                  state.unscored, windows, watch.detector, watch.worse,
                                  watch.alarms - watch.worse, watch.signals, tuple(segments)))
        return rows

    def metrics_events(self, now: datetime) -> list[dict[str, Any]]:
        """MetricsEvent dicts, one per key and non-empty window, with time windows ending at
        ``now``: wall-clock time live, the stream's ``watermark`` in a replay. The count
        window's carries the key's segments (empty without ``segment_by``)."""
        sizes: dict[WindowKind, float] = {
            "count": float(self.window_size),
            "time": float(self.time_window),
        }
        emitted_at = _utc(_epoch(now))
        return [
            {
                "model": row.model, "version": row.version, "variant": row.variant,
                "window_kind": kind, "window_size": sizes[kind], "samples": row.samples,
                "metrics": dict(values), "emitted_at": emitted_at,
                "segments": [{"feature": s.feature, "value": s.value, "samples": s.samples,
                              "metrics": dict(s.metrics)} for s in row.segments] if kind == "count" else [],
            }
            for row in self.status(now)
            for kind, values in row.metrics.items()
        ]

    def data_drift_scores(self) -> dict[str, dict[str, dict[str, float]]]:
        """model -> feature -> detector (PSI, KS) -> latest statistic."""
        return {
            model: {
                feature: {str(name): value for name, value in scores.items()}
                for feature, scores in monitor.scores.items()
            }
            for model, monitor in self._data.items()
        }
