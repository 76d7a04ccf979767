"""The settings of each role: one section per role inside :class:`~riverops.settings.Settings`.

Every knob a role has is here, with its default and its reason, so that the worker, the
demo and docker-compose set them the same way: ``RIVEROPS_<ROLE>__<KNOB>`` in the
environment (``RIVEROPS_RETRAINER__DEGRADATION_BELOW=0.85``, the promotion policy one
level deeper: ``RIVEROPS_RETRAINER__POLICY__MARGIN=0.02``). ``riverops settings`` lists them.

Examples
--------
>>> RetrainerSettings().policy.metric
'roc_auc'
>>> MonitorSettings(detector="PageHinkley").detector
'PageHinkley'
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ScorerSettings", "JoinerSettings", "MonitorSettings", "DataDriftSettings", "LearnerSettings",
    "PolicySettings", "RetrainerSettings", "OnlineSettings", "LagSettings",
]

DetectorName = Literal["ADWIN", "PageHinkley", "KSWIN", "DDM"]
BinarySignal = Literal["error", "positive_error", "negative_error", "log_loss"]
MulticlassSignal = Literal["error", "log_loss"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScorerSettings(_Section):
    fetch_wait_ms: int = Field(
        10, ge=0, description="the consumer's fetch.wait.max.ms: how long a fetch may wait for "
        "data (librdkafka's default, 500, adds that much latency on brokers that hold fetches)")
    commit_ms: float = Field(
        0.0, ge=0, description="least time between commits; 0: after every batch. Exactly once, "
        "each commit is a transaction that blocks the loop: a longer interval buys throughput "
        "with read_committed latency (Kafka Streams commits every 100 ms under exactly once)")
    linger_ms: float = Field(
        1.0, ge=0, description="the output producer's linger.ms: how long predictions wait to "
        "be sent in a larger request (riverops' other producers: 5)")
    explain_top_k: int = Field(
        0, ge=0, description="the largest contributions (weight times scaled value) of a linear "
        "model's prediction carried in its PredictionEvent's explanation field, with the "
        "intercept and the sum of the rest; 0: off (no per-event cost); other models get none")
    estimate_window: int = Field(
        5_000, ge=0, description="the last predictions of each binary model version and variant "
        "whose scores give its estimated accuracy and ROC AUC before any label "
        "(riverops_estimated_metric; riverops.models.estimate); 0: off")
    estimate_min_samples: int = Field(
        200, ge=1, description="fewer scores in the window than this: the estimate is exported "
        "with trust too_few")
    estimate_seconds: float = Field(
        5.0, gt=0, description="how often the estimates are computed and exported (one sort of "
        "the window per version)")


class JoinerSettings(_Section):
    checkpoint_seconds: float = Field(2.0, gt=0, description="how often join state is "
                                      "checkpointed and its offsets committed")
    label_ttl_seconds: float = Field(7 * 24 * 3600.0, gt=0, description="longest label delay "
                                     "accepted (stream time); older pending events expire")
    complete_runs_seconds: float = Field(2.0, ge=0, description="how long a batch may wait for "
                                         "the rest of an event's predictions")
    memory_events: int = Field(50_000, ge=0, description="pending events (and, apart, emitted "
                               "event ids) kept in memory per partition; older ones spill to a "
                               "scratch SQLite file in the state dir (0: all in memory)")


class DataDriftSettings(_Section):
    enabled: bool = Field(True, description="compare feature distributions with a reference")
    reference_size: int = Field(1000, ge=10, description="events in the reference window")
    window_size: int = Field(1000, ge=10, description="events in the current window")
    every: int = Field(200, ge=1, description="evaluate every this many events once full")
    min_seconds: float = Field(1.0, ge=0, description="... and no sooner than this many seconds "
                               "of label time after the last evaluation")
    psi_threshold: float = Field(0.2, gt=0, description="PSI above this is an alarm")
    ks_threshold: float = Field(0.2, gt=0, description="KS statistic above this is an alarm")


class MonitorSettings(_Section):
    emit_seconds: float = Field(2.0, gt=0, description="how often metrics events are produced")
    window_size: int = Field(1000, ge=1, description="labelled events in the count window")
    time_window: float = Field(300.0, gt=0, description="seconds of event time in the time window")
    detector: DetectorName = Field("ADWIN", description="concept-drift detector, one on each "
                                   "signal of each model version")
    binary_signals: tuple[BinarySignal, ...] = Field(
        ("positive_error", "log_loss"), min_length=1, description="what concept drift watches "
        "for binary models: error (0/1), positive_error (error on the positive class: 1 - "
        "recall), negative_error (false positive rate), log_loss")
    multiclass_signals: tuple[MulticlassSignal, ...] = Field(
        ("error", "log_loss"), min_length=1, description="what concept drift watches for "
        "multiclass models: error (0/1), log_loss")
    regression_signals: tuple[Literal["error"], ...] = Field(
        ("error",), min_length=1, description="what concept drift watches for regression "
        "models: error (absolute)")
    min_relative_rise: float = Field(0.2, ge=0, description="a concept-drift alarm is published "
                                     "(acted on) only when its signal's level after the change "
                                     "is this fraction above the level before it (0.2: 1% -> "
                                     "1.2%, 30% -> 36%)")
    rise_z: float = Field(3.0, ge=0, description="and only when that rise is this many standard "
                          "errors (two-sample z, pooled variance)")
    dedupe_size: int = Field(200_000, ge=1, description="recent event ids remembered to drop "
                             "repeated feedback")
    segment_by: tuple[str, ...] = Field((), description="features whose values get metrics of "
                                        "their own (a count window of window_size per value), "
                                        "e.g. [\"country\"]")
    segment_max_values: int = Field(50, ge=1, description="values per model and feature with a "
                                    "segment of their own; later ones share \"(other)\"")
    data_drift: DataDriftSettings = DataDriftSettings()


class LearnerSettings(_Section):
    every_samples: int = Field(5_000, ge=1, description="publish a snapshot after this many "
                               "labelled events")
    every_seconds: float = Field(60.0, gt=0, description="or after this many seconds")
    dedupe_size: int = Field(200_000, ge=1, description="recent event ids remembered to drop "
                             "repeated feedback")


class PolicySettings(_Section):
    metric: str = Field("roc_auc", description="the metric that decides promotions")
    margin: float = Field(0.01, ge=0, description="how much better a candidate must be")
    margin_kind: Literal["absolute", "relative"] = Field(
        "absolute", description="the margin in metric points, or as a fraction of the champion's")
    min_samples: int = Field(500, ge=1, description="held-out events needed to decide")
    challenger_share: float = Field(0.1, gt=0, lt=1, description="traffic share of a challenger")
    rollback_drop: float = Field(0.05, ge=0, description="live drop under the previous champion "
                                 "that rolls a new champion back")
    rollback_min_samples: int = Field(500, ge=1, description="live outcomes of a new champion "
                                      "before a rollback may be decided")
    rollback_patience: int = Field(3, ge=1, description="consecutive bad checks before a rollback")
    rollback_watch_samples: int = Field(20_000, ge=1, description="how long a new champion is watched")


class RetrainerSettings(_Section):
    window_events: int = Field(5_000, ge=10, description="feedback events a retrain learns from")
    window_seconds: float | None = Field(None, gt=0, description="and only those of the last "
                                         "seconds of event time")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="tail held out to compare "
                                    "candidate and champion")
    cooldown_seconds: float = Field(20.0, ge=0, description="least time between two automatic "
                                    "requests for one model")
    degradation_below: float | None = Field(None, description="request a retrain when the "
                                            "champion's rolling metric is worse than this (under "
                                            "it for roc_auc, accuracy...; above it for mae, rmse, "
                                            "log_loss)")
    schedule_seconds: float | None = Field(None, gt=0, description="request a retrain of every "
                                           "model this often")
    min_error_rise: float = Field(0.02, ge=0, description="a concept-drift alarm on the error "
                                  "signal (or naming none) acts only when the error rose by "
                                  "this much")
    drift_min_samples: int = Field(1_500, ge=1, description="feedback after an alarm to wait for")
    drift_wait_seconds: float = Field(60.0, ge=0, description="longest wait for it")
    recovery_samples: int | None = Field(400, ge=10, description="post-alarm feedback after "
                                         "which a drift retrain first runs (fast recovery, "
                                         "warm-started); not promoted, it runs again at twice "
                                         "as many, up to drift_min_samples; None: wait for "
                                         "drift_min_samples")
    recovery_start: Literal["warm", "scratch", "both"] = Field(
        "both", description="fast recovery candidates: a copy of the champion, a fresh model, "
        "or both (the better on the post-alarm holdout goes on)")
    recovery_passes: int = Field(8, ge=1, le=20, description="times a fast recovery candidate "
                                 "learns the post-alarm rows")
    recovery_holdout_fraction: float = Field(0.3, gt=0, lt=1, description="newest share of the "
                                             "post-alarm rows a fast recovery candidate is "
                                             "judged on")
    recovery_tolerance: float = Field(0.05, ge=0, description="a fast recovery promotes only a "
                                      "candidate this close to the champion's level before "
                                      "the alarm (policy metric units, or a fraction of it "
                                      "for a relative margin)")
    recovery_confidence: float = Field(0.95, ge=0.5, lt=1, description="confidence of the "
                                       "bootstrap bound that lets a fast recovery promote on "
                                       "fewer than policy.min_samples holdout rows")
    seed: int = Field(42, description="seed of every retrained model (same data, same model)")
    policy: PolicySettings = PolicySettings()


class OnlineSettings(_Section):
    idle_seconds: float = Field(1.0, gt=0, description="input-free time after which the time-order "
                                "merge is drained and offsets committed")


class LagSettings(_Section):
    every_seconds: float = Field(5.0, gt=0, description="how often lag is sampled")
