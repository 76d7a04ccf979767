"""The retrainer's pure core: when to ask for a retrain, when a request may run, and when a
new champion goes back.

:class:`RetrainerCore` holds, with no Kafka and no clock (every method is given ``now``,
seconds on any monotonic clock):

- the feedback window of each model (its last ``window_events`` events, each once, and
  where they were read);
- the triggers, which turn events into :class:`Trigger` (a RetrainRequest to publish): a
  concept-drift alarm of the champion (the monitor publishes only the alarms whose signal
  got worse by its rule; an alarm on the ``error`` signal, or from a monitor that names
  no signal, must also have risen by ``min_error_rise`` or more), the
  champion's rolling metric worse than ``degradation_below``, a schedule every
  ``schedule_seconds``. Automatic triggers of one model are ``cooldown_seconds`` apart,
  and none is made while a request of that model waits (the waiting one will see the
  same data);
- the requests waiting to run: a drift-triggered request trains on the feedback that
  followed the alarm (the window before it holds the old concept), so it waits until
  ``drift_min_samples`` feedback events from after the alarm's time are in the window,
  ``drift_wait_seconds`` at most. With ``recovery_samples`` set (below
  ``drift_min_samples``) it first runs as soon as that many are in: a *fast recovery* run
  (:mod:`~riverops.roles.retrainer.recovery`); one that does not promote is put back by
  :meth:`RetrainerCore.again` to wait for twice as many, and so on up to
  ``drift_min_samples``, where the retrain of a settled window runs (after a fast
  promotion too, judged against the new champion); every request then waits (``CATCH_UP_SECONDS`` at most)
  until the window holds the feedback that was out when it arrived, so a retrain sees the
  feedback that raised it;
- the probation of new champions (:class:`~riverops.roles.retrainer.policy.Probation`): a
  champion on its first reign is judged against the live level of the champion it
  replaced, and a :class:`Rollback` comes out when it stays under it.

Examples
--------
>>> from riverops.sections import RetrainerSettings
>>> core = RetrainerCore(RetrainerSettings(cooldown_seconds=30.0))
>>> alarm = {"model": "fraud", "kind": "concept", "variant": "champion", "detector": "ADWIN",
...          "statistic": 0.30, "threshold": 0.05, "detected_at": 1_000.0}
>>> core.on_drift(alarm, now=0.0).reason
'drift'
>>> core.on_drift(alarm, now=10.0) is None  # within the cooldown
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from riverops.models.registry import Registry
from riverops.roles.retrainer.frame import Source
from riverops.roles.retrainer.policy import Decision, Probation, PromotionPolicy
from riverops.schemas.events import RetrainReason, Scalar
from riverops.sections import RetrainerSettings

__all__ = ["CATCH_UP_SECONDS", "Trigger", "Rollback", "RetrainerCore", "Offsets", "millis"]

CATCH_UP_SECONDS = 10.0
"""Longest wait of a request for the feedback window to reach what was out when it arrived
(a consumer that cannot catch up must not hold retrains back for ever)."""

Offsets = dict[tuple[str, int], int]
"""Next offset per (topic, partition)."""

Feedback = tuple[dict[str, Any], Source]


def millis(value: datetime | float) -> float:
    """Epoch milliseconds of a decoded timestamp (a datetime, or already milliseconds)."""
    return value.timestamp() * 1000.0 if isinstance(value, datetime) else float(value)


@dataclass(frozen=True)
class Trigger:
    """A retrain to ask for: published as a RetrainRequest, it comes back on the retrain
    topic like a manual one and waits there like any request."""

    model: str
    reason: RetrainReason
    by: str
    params: dict[str, Scalar]


@dataclass(frozen=True)
class Rollback:
    """Roll back ``model``'s champion ``version``, for ``decision``'s reason."""

    model: str
    version: int
    decision: Decision


@dataclass
class _Waiting:
    received: float
    request: dict[str, Any]
    ends: Offsets  # the end of each feedback partition when the request arrived
    source: Source | None  # where the request was read (held back from the commit)
    need: int | None = None  # post-alarm feedback events to wait for (drift requests)


class RetrainerCore:
    """Feedback windows, triggers, waiting requests and probation of one retrainer (see the
    module docstring). ``policy`` defaults to ``settings.policy``'s."""

    def __init__(self, settings: RetrainerSettings, *, policy: PromotionPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or PromotionPolicy.from_settings(settings.policy)
        self._windows: dict[str, deque[Feedback]] = {}
        self._ids: dict[str, set[str]] = {}  # the event ids of each window
        self._last_request: dict[str, float] = {}
        self._waiting: list[_Waiting] = []
        self._probation: dict[tuple[str, int], Probation] = {}
        self._live: dict[tuple[str, int], tuple[float, int]] = {}  # latest (metric, samples)
        self._last_schedule: float | None = None
        self._fast: dict[str, _Waiting] = {}  # request_id -> fast recovery runs of the last ready()

    # -- feedback ------------------------------------------------------------------------
    def add_feedback(self, record: dict[str, Any], source: Source) -> None:
        """One feedback record (already validated) into its model's window; one whose
        event is in the window already (the joiner is at-least-once) is dropped, so that it
        neither pushes an older event out nor counts twice towards ``drift_min_samples``."""
        model, event_id = record["model"], record["event_id"]
        window = self._windows.get(model)
        if window is None:
            window = self._windows[model] = deque(maxlen=self.settings.window_events)
            self._ids[model] = set()
        ids = self._ids[model]
        if event_id in ids:
            return
        if len(window) == window.maxlen:
            ids.discard(window[0][0]["event_id"])  # the oldest is pushed out
        window.append((record, source))
        ids.add(event_id)

    def window(self, model: str) -> list[Feedback]:
        """The model's window, oldest first."""
        return list(self._windows.get(model, ()))

    def training_window(self, request: Mapping[str, Any]) -> tuple[list[Feedback], float | None]:
        """What a request trains on: the last ``window_events`` of its model's window (the
        request's ``params`` may ask for fewer) and the ``window_seconds`` of event time
        the frame keeps (the params' or the settings', None: no limit)."""
        params = request["params"]
        size = int(params.get("window_events") or self.settings.window_events)
        seconds = params.get("window_seconds") or self.settings.window_seconds
        return self.window(request["model"])[-size:], float(seconds) if seconds else None

    def after_alarm(self, model: str, since_ms: float) -> int:
        """Feedback events of the window at or after ``since_ms`` (event time, epoch ms)."""
        return sum(millis(r["event_time"]) >= since_ms for r, _ in self._windows.get(model, ()))

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop the feedback and the waiting requests read from ``partitions`` (taken
        away: the new owner replays them, and so does this worker if they come back)."""
        gone = set(partitions)
        for model, window in self._windows.items():
            kept = [(r, s) for r, s in window if (s[0], s[1]) not in gone]
            if len(kept) != len(window):
                self._windows[model] = deque(kept, maxlen=self.settings.window_events)
                self._ids[model] = {r["event_id"] for r, _ in kept}
        self._waiting = [w for w in self._waiting
                         if w.source is None or (w.source[0], w.source[1]) not in gone]

    # -- triggers ------------------------------------------------------------------------
    def _trigger(self, model: str, reason: RetrainReason, by: str, params: dict[str, Scalar],
                 now: float) -> Trigger | None:
        last = self._last_request.get(model)
        if last is not None and now - last < self.settings.cooldown_seconds:
            return None
        if any(w.request["model"] == model for w in self._waiting):
            return None  # one request at a time per model: the waiting one will see this data
        self._last_request[model] = now
        return Trigger(model, reason, by, params)

    def on_drift(self, event: Mapping[str, Any], *, now: float) -> Trigger | None:
        """A retrain after a concept alarm of the champion (the statistic is the signal's
        level after the change, the threshold its level before). The monitor publishes an
        alarm only when its signal got worse by the monitor's rule, a rise relative to the
        signal's own level (``MonitorSettings.min_relative_rise``, ``rise_z``); an alarm on
        the overall ``error``, or one that names no signal (a monitor from before signals,
        which published every rise), must also have risen by ``min_error_rise``: bursts of
        fraud move ADWIN on the error without a new concept. The other signals
        (``positive_error``, ``negative_error``, ``log_loss``) are not held to it: a
        minority class's error or the log-loss moves on its own scale."""
        if event["kind"] != "concept" or event["variant"] != "champion":
            return None
        signal = event.get("signal")
        rise = event["statistic"] - (event["threshold"] or 0.0)
        if signal in (None, "error") and rise < self.settings.min_error_rise:
            return None
        params: dict[str, Scalar] = {
            "detector": event["detector"], "error_after": float(event["statistic"]),
            "since_ms": millis(event["detected_at"]),
        }
        if signal is not None:
            params["signal"] = str(signal)
        return self._trigger(event["model"], "drift", "monitor", params, now)

    def on_metrics(self, event: Mapping[str, Any], registry: Registry, *,
                   now: float) -> list[Trigger | Rollback]:
        """Probation and degradation from a champion's rolling metric (count windows of the
        policy's metric only): a rollback of a new champion that stays under its baseline,
        else a retrain when the metric is worse than ``degradation_below``."""
        metric = self.policy.metric
        if (event["variant"] != "champion" or event["window_kind"] != "count"
                or metric not in event["metrics"]):
            return []
        model, version = event["model"], event["version"]
        value, samples = float(event["metrics"][metric]), int(event["samples"])
        self._live[(model, version)] = (value, samples)  # every champion's level, for baselines
        champion = registry.champion(model)
        if champion is None or champion.version != version:
            return []
        key = (model, version)
        previous = registry.previous_champion(model)
        if key not in self._probation and previous is not None and registry.times_champion(model, version) == 1:
            before = self._live.get((model, previous.version))
            self._probation[key] = Probation(baseline=before[0] if before else self.policy.baseline(champion))
        if key in self._probation:
            decision = self._probation[key].observe(self.policy, live_metric=value, samples=samples)
            if decision is not None:
                return [Rollback(model, version, decision)]
        level = self.settings.degradation_below
        if level is None or samples < self.policy.min_samples:
            return []
        worse = value < level if self.policy.higher_is_better else value > level
        trigger = self._trigger(model, "degradation", "retrainer",
                                {"metric": metric, "value": value}, now) if worse else None
        return [trigger] if trigger is not None else []

    def on_schedule(self, models: Iterable[str], *, now: float) -> list[Trigger]:
        """A retrain of every model each ``schedule_seconds`` (the first call starts the
        clock)."""
        every = self.settings.schedule_seconds
        if self._last_schedule is None:
            self._last_schedule = now
        if every is None or now - self._last_schedule < every:
            return []
        self._last_schedule = now
        triggers = [self._trigger(model, "schedule", "schedule", {}, now) for model in models]
        return [t for t in triggers if t is not None]

    # -- requests ------------------------------------------------------------------------
    def on_request(self, request: dict[str, Any], *, ends: Offsets, now: float,
                   source: Source | None = None) -> None:
        """A RetrainRequest read from the retrain topic; ``ends``: the feedback partitions'
        ends at that moment, which the window must reach before it runs."""
        need = None
        if request["params"].get("since_ms") is not None:
            need = self.settings.drift_min_samples
            fast = self.settings.recovery_samples
            if fast is not None and fast < need:
                need = fast
        self._waiting.append(_Waiting(now, request, dict(ends), source, need))

    def _ready(self, waiting: _Waiting, now: float, at_end: Callable[[Offsets], bool]) -> bool:
        waited = now - waiting.received
        since = waiting.request["params"].get("since_ms")
        if since is not None and waited <= self.settings.drift_wait_seconds:
            need = waiting.need or self.settings.drift_min_samples
            return self.after_alarm(waiting.request["model"], float(since)) >= need
        return waited > CATCH_UP_SECONDS or at_end(waiting.ends)

    def _is_fast(self, waiting: _Waiting, now: float) -> bool:
        return (waiting.need is not None and waiting.need < self.settings.drift_min_samples
                and now - waiting.received <= self.settings.drift_wait_seconds)

    def recovery_stage(self, request: Mapping[str, Any]) -> int | None:
        """The post-alarm feedback events a request returned by the last :meth:`ready`
        waited for when that run is a fast recovery run; None when it is not (no alarm, no
        ``recovery_samples``, ``drift_min_samples`` reached, or ``drift_wait_seconds``
        passed): then the retrain of a settled window runs."""
        waiting = self._fast.get(request["request_id"])
        return waiting.need if waiting is not None else None

    def again(self, request: Mapping[str, Any], *, settle: bool = False) -> int | None:
        """Put a fast recovery run back on the waiting list: for twice the post-alarm
        feedback when it did not promote, for ``drift_min_samples`` (the settled run, judged
        against the champion it made) with ``settle`` when it did; returns that number, None
        when the request was not a fast run. It keeps its place in the commit and its first
        arrival time, so ``drift_wait_seconds`` still bounds it."""
        waiting = self._fast.pop(request["request_id"], None)
        if waiting is None or waiting.need is None:
            return None
        final = self.settings.drift_min_samples
        waiting.need = final if settle else min(2 * waiting.need, final)
        self._waiting.insert(0, waiting)  # ahead of any later request of the model
        return waiting.need

    def ready(self, *, now: float, at_end: Callable[[Offsets], bool]) -> list[dict[str, Any]]:
        """The requests that may run now, in arrival order, taken off the waiting list; a
        request that must wait holds back the later ones of its model only. ``at_end(ends)``
        says whether the feedback consumer has reached ``ends``."""
        out: list[dict[str, Any]] = []
        held: set[str] = set()
        still: list[_Waiting] = []
        self._fast = {}
        for waiting in self._waiting:
            model = waiting.request["model"]
            if model not in held and self._ready(waiting, now, at_end):
                out.append(waiting.request)
                if self._is_fast(waiting, now):
                    self._fast[waiting.request["request_id"]] = waiting
            else:
                held.add(model)
                still.append(waiting)
        self._waiting = still
        return out

    @property
    def waiting(self) -> list[dict[str, Any]]:
        """The requests still waiting, in arrival order."""
        return [w.request for w in self._waiting]

    def holding(self) -> Offsets:
        """Per retrain partition, the offset of the oldest request still waiting: the
        commit stays before it, so a request a crash interrupts is read again."""
        held: Offsets = {}
        for waiting in self._waiting:
            if waiting.source is not None:
                key = (waiting.source[0], waiting.source[1])
                held[key] = min(held.get(key, waiting.source[2]), waiting.source[2])
        return held
