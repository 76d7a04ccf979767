"""A synthetic card-transaction stream with late labels and a fraud-pattern drift.

The demo's data source: deterministic by ``seed``, no files, fast enough that it is never
the bottleneck. It simulates a population of cards in simulated time and derives the
features online, as a real feature pipeline would, from each card's own history
(velocity over the last hour and day, amount against the card's running mean, time since
its previous transaction). Legitimate purchases follow a diurnal profile and each card's
habits; fraud comes in *episodes* on a compromised card, with a pattern that changes at
event index ``drift_at``:

- before: big-ticket fraud, one or two purchases far apart, more often at night, in electronics,
  jewelry, online retail and travel, often foreign and card-not-present;
- after: card testing, bursts of small purchases minutes apart in the daytime, mostly in
  digital goods, groceries and fuel, domestic, and more frequent (``drift_fraud_rate``).

A model fitted before the drift scores the new fraud low (small, domestic, daytime):
its ROC AUC falls below chance and, as it misses the now more frequent fraud, its error
rate rises, which a detector on the error stream (ADWIN) catches; a model retrained on
post-drift data learns the velocity features and recovers.

Labels arrive late: most after an exponential delay of a few minutes, a tail of
chargebacks (``chargeback_share`` of the fraud, a fifth of that share of legitimate
events) 1 to 30 days later. ``time_scale`` compresses simulated time into the emitted
timestamps (event and label times alike) for the demo; the features are computed in
simulated time and do not depend on it.

Examples
--------
>>> stream = CardStream(events=4, seed=3)
>>> tx = next(iter(stream))
>>> tx.event_id, tx.entity_id, tx.label, sorted(tx.features) == sorted(FEATURE_NAMES)
('tx0000000', 'card00705', False, True)
>>> [(kind[0], event["event_id"]) for kind, event in merged_events(stream)]  # doctest: +NORMALIZE_WHITESPACE
[('f', 'tx0000000'), ('f', 'tx0000001'), ('f', 'tx0000002'), ('l', 'tx0000001'),
 ('l', 'tx0000002'), ('f', 'tx0000003'), ('l', 'tx0000003'), ('l', 'tx0000000')]
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, Literal

from riverops.schemas.errors import ConfigError

__all__ = [
    "CATEGORIES",
    "FEATURE_NAMES",
    "CardStream",
    "FeatureValue",
    "Transaction",
    "merged_events",
]

FeatureValue = float | bool | str
DAY = 86_400.0
CATEGORIES = (
    "grocery", "restaurant", "fuel", "pharmacy", "entertainment",
    "online_retail", "digital_goods", "travel", "electronics", "jewelry",
)  # fmt: skip
FEATURE_NAMES = (
    "amount", "log_amount", "amount_to_mean", "merchant_category", "hour", "is_night",
    "tx_count_1h", "tx_count_24h", "seconds_since_last", "is_foreign", "card_present",
)  # fmt: skip

# Legitimate habits per category: population weight, amount multiplier, P(card present)
_POPULARITY = (30.0, 18.0, 10.0, 6.0, 6.0, 12.0, 8.0, 2.0, 2.5, 0.5)
_AMOUNT_SCALE = (1.0, 0.8, 1.2, 0.6, 1.0, 1.5, 0.3, 6.0, 5.0, 6.0)
_PRESENT = (0.97, 0.95, 0.98, 0.95, 0.7, 0.03, 0.02, 0.4, 0.6, 0.9)
_FOLLOWUP = 0.2  # chance that a legit purchase is followed by another of the card soon after


def _per_hour(weights: Sequence[float]) -> tuple[float, ...]:
    """Hour-of-day intensities scaled to a mean of 1, so rates keep their daily average."""
    mean = sum(weights) / len(weights)
    return tuple(w / mean for w in weights)


_LEGIT_HOURS = _per_hour((
    0.35, 0.3, 0.25, 0.25, 0.25, 0.3, 0.45, 0.7, 0.9, 1.1, 1.2, 1.4,
    1.6, 1.4, 1.3, 1.3, 1.4, 1.6, 1.7, 1.6, 1.3, 1.0, 0.8, 0.55,
))  # fmt: skip


def _boost(hours: Sequence[float], factors: Sequence[float]) -> tuple[float, ...]:
    """Fraud's hours: the shoppers' hours (fraud hides among them) times a preference."""
    return _per_hour([h * f for h, f in zip(hours, factors, strict=True)])


@dataclass(frozen=True)
class _Pattern:
    """How a fraud episode looks: its size, pace, hours, categories and amounts."""

    extra_mean: float  # extra transactions per episode ~ floor(Exp(extra_mean))
    gap_mean: float  # seconds between the episode's transactions ~ Exp(gap_mean)
    hours: tuple[float, ...]
    category_cum: tuple[float, ...]  # cumulative category weights
    log_amount: tuple[float, float, bool]  # (mu, sigma, relative to the card's typical amount)
    foreign: float
    present: float

    @property
    def mean_size(self) -> float:
        # E[1 + floor(X)] for X ~ Exp(mean m) is 1 + 1 / (e^(1/m) - 1)
        return 1.0 + 1.0 / math.expm1(1.0 / self.extra_mean)


_BIG_TICKET = _Pattern(
    extra_mean=0.7, gap_mean=2_700.0,
    hours=_boost(_LEGIT_HOURS, (1.8, 1.8, 1.8, 1.8, 1.8, 1.5, 1.2, 1, 1, 1, 1, 1,
                                1, 1, 1, 1, 1, 1, 1, 1, 1, 1.2, 1.5, 1.8)),
    category_cum=tuple(accumulate((1, 1, 0.5, 0.5, 2, 25, 3, 15, 35, 17))),
    log_amount=(1.3, 0.6, True), foreign=0.45, present=0.2,
)  # fmt: skip
_CARD_TESTING = _Pattern(
    extra_mean=5.0, gap_mean=120.0,
    hours=_boost(_LEGIT_HOURS, (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.7, 1, 1.2, 1.3, 1.3, 1.3,
                                1.3, 1.3, 1.3, 1.3, 1.3, 1.2, 1, 1, 1, 0.8, 0.6, 0.5)),
    category_cum=tuple(accumulate((15, 6, 15, 4, 4, 4, 50, 0.5, 1, 0.5))),
    log_amount=(math.log(3.0), 0.6, False), foreign=0.02, present=0.5,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Transaction:
    """One card transaction: its features at ``event_time``, its label at ``label_time``."""

    event_id: str
    entity_id: str
    event_time: datetime
    features: dict[str, FeatureValue]
    label: bool
    label_time: datetime
    after_drift: bool


@dataclass(slots=True)
class _Card:
    """One card's habits and the running state its features are computed from."""

    log_typical: float
    cum_weights: list[float]
    foreign: float
    last_time: float
    mean_amount: float
    count: float
    recent: deque[float]


class CardStream:
    """``events`` synthetic transactions of ``cards`` cards, the same ones for the same seed.

    Iterating yields :class:`Transaction` objects in event order, from scratch each time.
    ``fraud_rate`` is the share of fraud before ``drift_at`` (None: no drift) and
    ``drift_fraud_rate`` after it. Cards make ``tx_per_card_day`` purchases a day on
    average, so the simulated stream runs at ``cards * tx_per_card_day / 86400`` events per
    simulated second; ``time_scale`` (simulated seconds per emitted second), or
    ``events_per_second`` (the emitted rate it implies), compresses the timestamps.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        events: int = 100_000,
        drift_at: int | None = None,
        fraud_rate: float = 0.015,
        drift_fraud_rate: float = 0.035,
        cards: int = 2000,
        tx_per_card_day: float = 3.0,
        start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
        time_scale: float = 1.0,
        events_per_second: float | None = None,
        label_delay_mean: float = 180.0,
        chargeback_share: float = 0.05,
        id_prefix: str = "tx",
    ) -> None:
        if events < 0 or cards < 1 or tx_per_card_day <= 0 or label_delay_mean <= 0:
            raise ConfigError("need events >= 0, cards >= 1, tx_per_card_day > 0, label_delay_mean > 0")
        if drift_at is not None and drift_at < 0:
            raise ConfigError(f"drift_at must be an event index >= 0, got {drift_at}")
        for name, rate in (("fraud_rate", fraud_rate), ("drift_fraud_rate", drift_fraud_rate),
                           ("chargeback_share", chargeback_share)):  # fmt: skip
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {rate}")
        if events_per_second is not None:
            if time_scale != 1.0:
                raise ConfigError("give time_scale or events_per_second, not both")
            if events_per_second <= 0:
                raise ConfigError(f"events_per_second must be > 0, got {events_per_second}")
            time_scale = events_per_second / (cards * tx_per_card_day / DAY)
        if time_scale <= 0:
            raise ConfigError(f"time_scale must be > 0, got {time_scale}")
        self.seed = seed
        self.events = events
        self.drift_at = drift_at
        self.fraud_rate = fraud_rate
        self.drift_fraud_rate = drift_fraud_rate
        self.cards = cards
        self.tx_per_card_day = tx_per_card_day
        self.start = start if start.tzinfo else start.replace(tzinfo=UTC)
        self.time_scale = time_scale
        self.label_delay_mean = label_delay_mean
        self.chargeback_share = chargeback_share
        self.id_prefix = id_prefix

    @property
    def events_per_second(self) -> float:
        """Average events per second of emitted (compressed) time."""
        return self.cards * self.tx_per_card_day / DAY * self.time_scale

    def __len__(self) -> int:
        return self.events

    def __iter__(self) -> Iterator[Transaction]:
        rng = random.Random(self.seed)
        weights = [rng.lognormvariate(0.0, 0.8) for _ in range(self.cards)]
        mean_weight = sum(weights) / self.cards
        cards = [self._card(rng, self.tx_per_card_day * w / mean_weight) for w in weights]
        activity = list(accumulate(weights))
        legit_rate = self.cards * self.tx_per_card_day / DAY * (1.0 - _FOLLOWUP)
        start_ms = round(self.start.timestamp() * 1000.0)
        day_offset = (self.start.timestamp() % DAY + DAY) % DAY
        # fraud txs and legit follow-ups waiting for their time: (t, seq, card, pattern)
        scheduled: list[tuple[float, int, int, _Pattern | None]] = []
        seq = 0

        def next_time(t: float, rate: float, hours: tuple[float, ...]) -> float:
            # a Poisson process of intensity rate * hours[hour of day], by thinning
            top = max(hours)
            while True:
                t += rng.expovariate(rate * top)
                if rng.random() * top < hours[int((t + day_offset) % DAY // 3600.0)]:
                    return t

        pattern, rate = _BIG_TICKET, self._episode_rate(_BIG_TICKET, self.fraud_rate, legit_rate)
        t_legit = next_time(0.0, legit_rate, _LEGIT_HOURS)
        t_episode = next_time(0.0, rate, pattern.hours) if rate else math.inf
        index, now = 0, 0.0
        while index < self.events:
            if index == self.drift_at and pattern is _BIG_TICKET:
                pattern = _CARD_TESTING
                rate = self._episode_rate(pattern, self.drift_fraud_rate, legit_rate)
                t_episode = next_time(now, rate, pattern.hours) if rate else math.inf
            t_next = scheduled[0][0] if scheduled else math.inf
            if t_episode < t_legit and t_episode < t_next:
                card_no, t = rng.randrange(self.cards), t_episode
                for _ in range(1 + int(rng.expovariate(1.0 / pattern.extra_mean))):
                    heapq.heappush(scheduled, (t, seq, card_no, pattern))
                    seq += 1
                    t += rng.expovariate(1.0 / pattern.gap_mean)
                t_episode = next_time(t_episode, rate, pattern.hours)
                continue
            if t_next <= t_legit:
                t, _, card_no, fraud = heapq.heappop(scheduled)
            else:
                t, fraud = t_legit, None
                card_no = bisect.bisect(activity, rng.random() * activity[-1])
                t_legit = next_time(t_legit, legit_rate, _LEGIT_HOURS)
            if fraud is None and rng.random() < _FOLLOWUP:
                heapq.heappush(scheduled, (t + rng.expovariate(1.0 / 900.0), seq, card_no, None))
                seq += 1
            now, hour = t, int((t + day_offset) % DAY // 3600.0)
            features = self._features(rng, cards[card_no], t, hour, fraud)
            is_fraud = fraud is not None
            delay = self._label_delay(rng, is_fraud)
            yield Transaction(
                event_id=f"{self.id_prefix}{index:07d}",
                entity_id=f"card{card_no:05d}",
                event_time=_at(start_ms + round(t * 1000.0 / self.time_scale)),
                features=features,
                label=is_fraud,
                label_time=_at(start_ms + round((t + delay) * 1000.0 / self.time_scale)),
                after_drift=self.drift_at is not None and index >= self.drift_at,
            )
            index += 1

    def _card(self, rng: random.Random, per_day: float) -> _Card:
        """A card's habits and a warm last day of history (its purchases before time 0)."""
        log_typical = rng.gauss(3.3, 0.6)
        prefs = [w * rng.gammavariate(1.0, 1.0) for w in _POPULARITY]
        past = [-rng.expovariate(per_day / DAY)]
        while past[-1] > -DAY:
            past.append(past[-1] - rng.expovariate(per_day / DAY))
        return _Card(
            log_typical=log_typical,
            cum_weights=list(accumulate(prefs)),
            foreign=rng.betavariate(0.5, 20.0),
            last_time=past[0],
            mean_amount=math.exp(log_typical + 0.3),
            count=3.0,  # the running mean starts from the card's habits, as from a history
            recent=deque(reversed(past[:-1])),
        )

    @staticmethod
    def _episode_rate(pattern: _Pattern, fraud_rate: float, legit_rate: float) -> float:
        """The episode start rate giving ``fraud_rate`` of fraud among all events."""
        legit_total = legit_rate / (1.0 - _FOLLOWUP)  # arrivals and their follow-ups
        return fraud_rate * legit_total / ((1.0 - fraud_rate) * pattern.mean_size)

    def _features(
        self, rng: random.Random, card: _Card, t: float, hour: int, fraud: _Pattern | None
    ) -> dict[str, FeatureValue]:
        """Draw the purchase, derive the features from the card's state, then update it."""
        if fraud is None:
            category = bisect.bisect(card.cum_weights, rng.random() * card.cum_weights[-1])
            amount = math.exp(rng.gauss(card.log_typical, 0.6)) * _AMOUNT_SCALE[category]
            foreign = rng.random() < (card.foreign * 8.0 if category == 7 else card.foreign)
            present = rng.random() < _PRESENT[category]
        else:
            cum = fraud.category_cum
            category = bisect.bisect(cum, rng.random() * cum[-1])
            mu, sigma, relative = fraud.log_amount
            amount = math.exp(rng.gauss(mu + (card.log_typical if relative else 0.0), sigma))
            foreign = rng.random() < fraud.foreign
            present = rng.random() < fraud.present
        amount = max(round(amount, 2), 0.5)
        recent = card.recent
        while recent and recent[0] <= t - DAY:
            recent.popleft()
        last_hour = 0
        for seen in reversed(recent):
            if seen <= t - 3600.0:
                break
            last_hour += 1
        features: dict[str, FeatureValue] = {
            "amount": amount,
            "log_amount": math.log1p(amount),
            "amount_to_mean": amount / card.mean_amount,
            "merchant_category": CATEGORIES[category],
            "hour": float(hour),
            "is_night": hour < 6,
            "tx_count_1h": float(last_hour),
            "tx_count_24h": float(len(recent)),
            "seconds_since_last": max(t - card.last_time, 0.0),
            "is_foreign": foreign,
            "card_present": present,
        }
        recent.append(t)
        card.last_time = t
        card.count += 1.0
        card.mean_amount += (amount - card.mean_amount) / card.count
        return features

    def _label_delay(self, rng: random.Random, fraud: bool) -> float:
        """Simulated seconds until the label: minutes mostly, a chargeback tail of days."""
        if rng.random() < (self.chargeback_share if fraud else self.chargeback_share / 5.0):
            return rng.uniform(1.0, 30.0) * DAY
        return rng.expovariate(1.0 / self.label_delay_mean)


def _at(millis: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)


def merged_events(
    transactions: Iterable[Transaction],
    *,
    model: str = "fraud",
    late_labels: bool = True,
) -> Iterator[tuple[Literal["features", "label"], dict[str, Any]]]:
    """The FeatureEvent and LabelEvent dicts of ``transactions`` in time order.

    Features come at their event time, labels at their label time, so labels interleave
    with later features as they would arrive at a real producer: this is what the demo
    replays into Kafka. At equal times features come first. ``late_labels=False`` drops
    the labels due after the last event (the chargeback tail a finite demo never reaches).
    """
    pending: list[tuple[datetime, int, dict[str, Any]]] = []
    seq = 0
    for tx in transactions:
        while pending and pending[0][0] < tx.event_time:
            yield "label", heapq.heappop(pending)[2]
        yield "features", {
            "event_id": tx.event_id, "model": model, "entity_id": tx.entity_id,
            "event_time": tx.event_time, "features": tx.features,
        }  # fmt: skip
        label = {"event_id": tx.event_id, "model": model, "label": tx.label,
                 "label_time": tx.label_time}  # fmt: skip
        heapq.heappush(pending, (tx.label_time, seq, label))
        seq += 1
    if late_labels:
        while pending:
            yield "label", heapq.heappop(pending)[2]
