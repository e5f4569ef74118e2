"""Fixed tracks for the ETA and alert tests: straight runs, stalls, detours, going away."""

import datetime as dt

from tracking.eta import Delivery, TrackPoint
from tracking.management.simulation import from_local, to_local

WAREHOUSE = (31.188, 121.437)
# 2 km due north of the warehouse.
DESTINATION = from_local(WAREHOUSE, (0.0, 2000.0))
START = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)  # 14:00 in Shanghai


def north(metres: float) -> tuple[float, float]:
    return from_local(WAREHOUSE, (0.0, metres))


def at(point: tuple[float, float], recorded_at: dt.datetime) -> TrackPoint:
    return TrackPoint(point[0], point[1], recorded_at)


def straight_run(
    start: dt.datetime, *, speed_mps: float, every_s: float = 15.0, length_m: float = 2000.0
) -> list[TrackPoint]:
    """A rider riding due north from the warehouse at a constant speed, one point every `every_s`."""
    points = []
    seconds = 0.0
    while seconds * speed_mps < length_m:
        points.append(at(north(seconds * speed_mps), start + dt.timedelta(seconds=seconds)))
        seconds += every_s
    points.append(at(north(length_m), start + dt.timedelta(seconds=length_m / speed_mps)))
    return points


def stall(position: tuple[float, float], start: dt.datetime, *, seconds: float, every_s: float = 15.0):
    """Standing still (a couple of metres of GPS jitter) for `seconds`."""
    points = []
    for step in range(int(seconds // every_s) + 1):
        jitter = 2.0 if step % 2 else -2.0
        x, y = to_local(WAREHOUSE, position)
        points.append(at(from_local(WAREHOUSE, (x + jitter, y)), start + dt.timedelta(seconds=step * every_s)))
    return points


def straight_delivery(
    start: dt.datetime, *, speed_mps: float, handover_s: float = 120.0, length_m: float = 2000.0
) -> Delivery:
    """A completed delivery: a straight run, then `handover_s` at the door."""
    track = straight_run(start, speed_mps=speed_mps, length_m=length_m)
    arrived = track[-1].recorded_at
    destination = north(length_m)
    door = [at(destination, arrived + dt.timedelta(seconds=s)) for s in range(15, int(handover_s), 15)]
    return Delivery(
        warehouse=WAREHOUSE,
        destination=destination,
        paid_at=start - dt.timedelta(seconds=600),
        dispatched_at=start,
        delivered_at=arrived + dt.timedelta(seconds=handover_s),
        stage_times={
            "picking": start - dt.timedelta(seconds=540),
            "picked": start - dt.timedelta(seconds=240),
            "packed": start - dt.timedelta(seconds=120),
        },
        points=tuple(track + door),
    )
