"""GPS data quality, like Traccar's filters: which rider points are kept in the history but not trusted.

A point is flagged when its reported accuracy is worse than GPS_MAX_ACCURACY_M
(`accuracy`), when it sits at (0, 0), where a device without a fix reports
zeros (`zero`), or when reaching it from the rider's previous accepted point
would need more than GPS_MAX_SPEED_MPS (`speed`). A flagged point is stored
with its flags (the history stays complete, staff see them on the
trajectory), but it never moves the rider's live position and the ETA and the
alerts do not read it (TrackingEvent.objects.positions()). Pure functions:
the ingest runs them on every point of a batch.
"""

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from xiaoxiang.geo import haversine_m

ACCURACY = "accuracy"
ZERO = "zero"
SPEED = "speed"
FLAGS = (ACCURACY, ZERO, SPEED)

# Below the stored precision (6 decimals): the point is stored as exactly (0, 0).
ZERO_DEGREES = 5e-7
# Device times have (at least) second resolution: two fixes closer in time count as one second apart.
MIN_INTERVAL_SECONDS = 1.0


class Fix(Protocol):
    """Where and when a point is (tracking.services.LocationPoint, tracking.eta.TrackPoint)."""

    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def recorded_at(self) -> dt.datetime: ...


class MeasuredFix(Fix, Protocol):
    """A point as the device reported it, with its accuracy in metres when known (LocationPoint)."""

    @property
    def accuracy(self) -> float | None: ...


@dataclass(frozen=True)
class Thresholds:
    """The GPS_* settings (defaults and meaning in xiaoxiang/settings.py)."""

    max_accuracy_m: float
    max_speed_mps: float
    speed_window_seconds: float


def quality_thresholds() -> Thresholds:
    return Thresholds(
        max_accuracy_m=settings.GPS_MAX_ACCURACY_M,
        max_speed_mps=settings.GPS_MAX_SPEED_MPS,
        speed_window_seconds=settings.GPS_SPEED_WINDOW_SECONDS,
    )


def point_flags(point: MeasuredFix, *, previous: Fix | None, thresholds: Thresholds) -> tuple[str, ...]:
    """What is wrong with `point` (in FLAGS order); () for a point fit to be a position.

    `previous` is the rider's accepted point before it. It may also be later
    in device time (a late batch compared with the live position): the speed
    bound holds both ways. A previous point further away in time than the
    window is not compared, so one wrong but unflagged point cannot hold the
    rider's position for longer than that.
    """
    flags = []
    if point.accuracy is not None and point.accuracy > thresholds.max_accuracy_m:
        flags.append(ACCURACY)
    if abs(point.lat) < ZERO_DEGREES and abs(point.lon) < ZERO_DEGREES:
        flags.append(ZERO)
    if previous is not None:
        seconds = abs((point.recorded_at - previous.recorded_at).total_seconds())
        if seconds <= thresholds.speed_window_seconds:
            distance = haversine_m(previous.lat, previous.lon, point.lat, point.lon)
            if distance > thresholds.max_speed_mps * max(seconds, MIN_INTERVAL_SECONDS):
                flags.append(SPEED)
    return tuple(flags)


def batch_flags(
    points: Sequence[MeasuredFix], *, previous: Fix | None, thresholds: Thresholds
) -> list[tuple[str, ...]]:
    """Each point's flags, for points in device-time order.

    Each point is compared with the last accepted point before it in the
    batch, the first ones with `previous` (the rider's live position).
    """
    result = []
    for point in points:
        flags = point_flags(point, previous=previous, thresholds=thresholds)
        if not flags:
            previous = point
        result.append(flags)
    return result


def flags_stored(flags: Iterable[str]) -> str:
    """The flags as stored in TrackingEvent.quality_flags: comma-separated, '' when none."""
    return ",".join(flags)


def flags_read(stored: str) -> list[str]:
    """The stored flags as the wire shows them: a list of names, [] when none."""
    return stored.split(",") if stored else []
