"""Backtesting the ETA model: fit on older deliveries, score the held-out newest beside a naive baseline.

Pure functions like tracking.eta; `manage.py eta_backtest` feeds them history.
"""

import datetime as dt
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from tracking.eta import (
    Delivery,
    EtaParams,
    TrackPoint,
    distance_to,
    eta_fit,
    eta_predict_delivering,
    track_arrived_at,
)

# Naive baseline for the backtest: straight-line distance at a fixed 15 km/h, no handover.
BASELINE_SPEED_MPS = 15.0 / 3.6


def baseline_predict(*, at: dt.datetime, distance_m: float) -> dt.datetime:
    """The naive estimate the model must beat: distance over a fixed speed."""
    return at + dt.timedelta(seconds=distance_m / BASELINE_SPEED_MPS)


@dataclass(frozen=True)
class ErrorSummary:
    count: int
    mean_seconds: float
    p90_seconds: float


@dataclass(frozen=True)
class BacktestReport:
    train_deliveries: int
    test_deliveries: int
    model: ErrorSummary
    baseline: ErrorSummary
    params: EtaParams


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(errors: Sequence[float]) -> ErrorSummary:
    if not errors:
        return ErrorSummary(count=0, mean_seconds=math.nan, p90_seconds=math.nan)
    return ErrorSummary(count=len(errors), mean_seconds=statistics.fmean(errors), p90_seconds=percentile(errors, 0.9))


def split_history(deliveries: Sequence[Delivery], *, test_fraction: float = 0.2) -> tuple[list, list]:
    """Oldest deliveries train, the newest `test_fraction` are held out (no peeking at the future)."""
    ordered = sorted(deliveries, key=lambda d: d.delivered_at)
    held_out = max(1, round(len(ordered) * test_fraction)) if ordered else 0
    return ordered[: len(ordered) - held_out], ordered[len(ordered) - held_out :]


def eta_backtest(deliveries: Sequence[Delivery], *, tz: dt.tzinfo, test_fraction: float = 0.2) -> BacktestReport:
    """Fit on the older deliveries, then predict the delivery time of each held-out one
    at dispatch and at every point of its ride, beside the naive baseline."""
    train, test = split_history(deliveries, test_fraction=test_fraction)
    params = eta_fit(train, tz=tz)
    model_errors: list[float] = []
    baseline_errors: list[float] = []
    for delivery in test:
        ride = [p for p in delivery.points if delivery.dispatched_at <= p.recorded_at < delivery.delivered_at]
        checkpoints: list[TrackPoint | None] = [None, *ride]
        for index, point in enumerate(checkpoints):
            now = point.recorded_at if point is not None else delivery.dispatched_at
            predicted = eta_predict_delivering(
                params,
                now=now,
                destination=delivery.destination,
                warehouse=delivery.warehouse,
                dispatched_at=delivery.dispatched_at,
                position=point,
                tz=tz,
                # Only what was known then: the track up to this checkpoint.
                arrived_at=track_arrived_at(ride[:index], delivery.destination),
            )
            origin = (point.lat, point.lon) if point is not None else delivery.warehouse
            naive = baseline_predict(at=now, distance_m=distance_to(origin, delivery.destination))
            model_errors.append(abs((predicted - delivery.delivered_at).total_seconds()))
            baseline_errors.append(abs((naive - delivery.delivered_at).total_seconds()))
    return BacktestReport(
        train_deliveries=len(train),
        test_deliveries=len(test),
        model=summarize(model_errors),
        baseline=summarize(baseline_errors),
        params=params,
    )
