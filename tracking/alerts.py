"""Alert detection as pure functions on a delivering order's track.

Each check answers a `Finding`: is the condition true right now, and with
what message and data. The services in `tracking.alert_services` turn
findings into at most one open `Alert` per order and kind, and resolve it
when a later finding says the condition cleared.
"""

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracking.eta import ARRIVAL_RADIUS_M, TrackPoint
from xiaoxiang.geo import EARTH_RADIUS_M, haversine_m

STALL = "stall"
DEVIATION = "deviation"
LATE = "late"
OFFLINE = "offline"

# Steps smaller than this are GPS jitter, not "moving away".
JITTER_M = 5.0


@dataclass(frozen=True)
class Thresholds:
    """The ALERT_* settings (defaults and meaning in xiaoxiang/settings.py)."""

    stall_seconds: float
    stall_radius_m: float
    away_points: int
    away_min_m: float
    corridor_m: float
    offline_seconds: float
    late_grace_seconds: float
    arrival_radius_m: float = ARRIVAL_RADIUS_M


@dataclass(frozen=True)
class Finding:
    kind: str
    active: bool
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def _distance(a: TrackPoint | tuple[float, float], b: TrackPoint | tuple[float, float]) -> float:
    lat1, lon1 = (a.lat, a.lon) if isinstance(a, TrackPoint) else a
    lat2, lon2 = (b.lat, b.lon) if isinstance(b, TrackPoint) else b
    return haversine_m(lat1, lon1, lat2, lon2)


def distance_to_segment_m(point: tuple[float, float], start: tuple[float, float], end: tuple[float, float]) -> float:
    """Distance from `point` to the segment start-end, on a local flat projection (fine at city scale)."""
    scale_lon = math.cos(math.radians(start[0]))

    def project(lat: float, lon: float) -> tuple[float, float]:
        return (
            math.radians(lon - start[1]) * scale_lon * EARTH_RADIUS_M,
            math.radians(lat - start[0]) * EARTH_RADIUS_M,
        )

    px, py = project(*point)
    ex, ey = project(*end)
    length_sq = ex * ex + ey * ey
    t = 0.0 if length_sq == 0 else max(0.0, min(1.0, (px * ex + py * ey) / length_sq))
    return math.hypot(px - t * ex, py - t * ey)


def stall_check(points: Sequence[TrackPoint], *, destination: tuple[float, float], thresholds: Thresholds) -> Finding:
    """Stalled: the newest points stayed within a few metres for N minutes, away from the door."""
    if not points:
        return Finding(STALL, False)
    latest = points[-1]
    since = latest
    for point in reversed(points[:-1]):
        if _distance(point, latest) > thresholds.stall_radius_m:
            break
        since = point
    stalled_seconds = (latest.recorded_at - since.recorded_at).total_seconds()
    at_door = _distance(latest, destination) <= thresholds.arrival_radius_m
    if stalled_seconds < thresholds.stall_seconds or at_door:
        return Finding(STALL, False)
    minutes = int(stalled_seconds // 60)
    return Finding(
        STALL,
        True,
        f"骑手已在同一位置停留 {minutes} 分钟",
        {"since": since.recorded_at.isoformat(), "lat": latest.lat, "lon": latest.lon, "seconds": int(stalled_seconds)},
    )


def deviation_check(
    points: Sequence[TrackPoint],
    *,
    warehouse: tuple[float, float],
    destination: tuple[float, float],
    thresholds: Thresholds,
) -> Finding:
    """Off route: moving away from the door for several points in a row, or outside the corridor."""
    if not points:
        return Finding(DEVIATION, False)
    latest = points[-1]
    off_corridor = distance_to_segment_m((latest.lat, latest.lon), warehouse, destination)
    if off_corridor > thresholds.corridor_m:
        return Finding(
            DEVIATION,
            True,
            f"骑手偏离路线 {int(off_corridor)} 米",
            {"reason": "corridor", "off_route_m": int(off_corridor), "lat": latest.lat, "lon": latest.lon},
        )
    recent = points[-(thresholds.away_points + 1) :]
    if len(recent) == thresholds.away_points + 1:
        distances = [_distance(point, destination) for point in recent]
        steps = [after - before for before, after in itertools.pairwise(distances)]
        moved_away = distances[-1] - distances[0]
        if all(step > JITTER_M for step in steps) and moved_away >= thresholds.away_min_m:
            return Finding(
                DEVIATION,
                True,
                f"骑手正在远离收货地址（{len(steps)} 个点内远离 {int(moved_away)} 米）",
                {"reason": "away", "moved_away_m": int(moved_away), "lat": latest.lat, "lon": latest.lon},
            )
    return Finding(DEVIATION, False)


def late_check(
    *, now: dt.datetime, promised_at: dt.datetime, eta: dt.datetime | None, thresholds: Thresholds
) -> Finding:
    """Late: past the promise already, or the ETA says it will be."""
    grace = dt.timedelta(seconds=thresholds.late_grace_seconds)
    if now > promised_at:
        minutes = int((now - promised_at).total_seconds() // 60)
        return Finding(
            LATE,
            True,
            f"已超过承诺送达时间 {minutes} 分钟",
            {"reason": "overdue", "promised_at": promised_at.isoformat(), "eta": eta.isoformat() if eta else None},
        )
    if eta is not None and eta > promised_at + grace:
        minutes = math.ceil((eta - promised_at).total_seconds() / 60)
        return Finding(
            LATE,
            True,
            f"预计晚于承诺时间约 {minutes} 分钟送达",
            {"reason": "predicted", "promised_at": promised_at.isoformat(), "eta": eta.isoformat()},
        )
    return Finding(LATE, False)


def offline_check(*, now: dt.datetime, last_heard_at: dt.datetime | None, thresholds: Thresholds) -> Finding:
    """Offline: nothing heard from the rider for N minutes while delivering."""
    if last_heard_at is None:
        return Finding(OFFLINE, False)
    silent = (now - last_heard_at).total_seconds()
    if silent < thresholds.offline_seconds:
        return Finding(OFFLINE, False)
    return Finding(
        OFFLINE,
        True,
        f"骑手已 {int(silent // 60)} 分钟没有上报位置",
        {"last_heard_at": last_heard_at.isoformat(), "seconds": int(silent)},
    )
