"""ETA as pure functions: fit a small model on completed deliveries, and predict.

No database here: callers pass plain `Delivery` records and track points, so
the same code serves the live recompute, the refit job, the backtest
(tracking.eta_backtest) and the unit tests.

The model
---------
- **Travel** is a *pace*: seconds per metre of street-grid distance to the
  door (Manhattan: east-west plus north-south, up to the edge of
  `ARRIVAL_RADIUS_M`), which follows a city's blocks far better than the
  crow's flight. It is learned per (local hour of day, distance band) from
  every point of every completed track, as (time from that point to
  arrival) / (grid distance left), each delivery casting one vote per cell.
  The pace folds traffic, lights and detours into one number. An hour with
  too few rides of its own uses the pooled hours either side of it; then the
  hour across all bands, the band across all hours, all rides, and finally
  `DEFAULT_PACE_S_PER_M`.
- **Warehouse** phases (queue before picking, picking, packing, waiting for
  dispatch) are medians of the observed durations.
- **Handover** at the door is the median time from arriving within
  `ARRIVAL_RADIUS_M` of the destination to being marked delivered.

Documented defaults (used with fewer than `MIN_DELIVERIES` deliveries, or
for a cell with fewer than `MIN_CELL_SAMPLES` samples from
`MIN_CELL_DELIVERIES` deliveries): riders make 15 km/h along the street
grid, the warehouse takes 1 min to
start picking, 5 min to pick, 2 min to pack and 1.5 min to hand over to a
rider, and the door handover takes 1.5 min.
"""

import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xiaoxiang.geo import EARTH_RADIUS_M, haversine_m

ARRIVAL_RADIUS_M = 60.0
# Upper edges of the distance bands, metres; the last band is open.
DISTANCE_BAND_EDGES_M = (500.0, 1500.0, 3000.0)
MIN_DELIVERIES = 5
MIN_CELL_SAMPLES = 20
MIN_CELL_DELIVERIES = 4
MIN_PHASE_SAMPLES = 5
# Never promise less than this: even a rider at the door needs a moment.
MIN_REMAINING_SECONDS = 30.0

DEFAULT_PACE_S_PER_M = 3.6 / 15.0  # 15 km/h along the street grid
DEFAULT_PHASE_SECONDS = {"queue": 60.0, "picking": 300.0, "packing": 120.0, "dispatch": 90.0}
DEFAULT_HANDOVER_SECONDS = 90.0


# Warehouse phases in order, and the order stage that starts each one ("" = just paid).
PHASES = ("queue", "picking", "packing", "dispatch")
PHASE_OF_STAGE = {"": "queue", "picking": "picking", "picked": "packing", "packed": "dispatch"}


@dataclass(frozen=True)
class TrackPoint:
    lat: float
    lon: float
    recorded_at: dt.datetime


@dataclass(frozen=True)
class Delivery:
    """One completed delivery, as the fit and the backtest see it."""

    warehouse: tuple[float, float]
    destination: tuple[float, float]
    paid_at: dt.datetime | None
    dispatched_at: dt.datetime
    delivered_at: dt.datetime
    # When each warehouse stage was reported: {"picking": t, "picked": t, "packed": t}.
    stage_times: dict[str, dt.datetime] = field(default_factory=dict)
    points: tuple[TrackPoint, ...] = ()


@dataclass
class EtaParams:
    """A fitted model; `as_dict`/`from_dict` round-trip it through JSON."""

    pace_s_per_m: dict[str, float] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PHASE_SECONDS))
    handover_seconds: float = DEFAULT_HANDOVER_SECONDS
    deliveries: int = 0
    samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "pace_s_per_m": self.pace_s_per_m,
            "phase_seconds": self.phase_seconds,
            "handover_seconds": self.handover_seconds,
            "deliveries": self.deliveries,
            "samples": self.samples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EtaParams":
        return cls(
            pace_s_per_m={str(k): float(v) for k, v in data.get("pace_s_per_m", {}).items()},
            phase_seconds={**DEFAULT_PHASE_SECONDS, **{k: float(v) for k, v in data.get("phase_seconds", {}).items()}},
            handover_seconds=float(data.get("handover_seconds", DEFAULT_HANDOVER_SECONDS)),
            deliveries=int(data.get("deliveries", 0)),
            samples=int(data.get("samples", 0)),
        )


def distance_band(distance_m: float) -> int:
    for band, edge in enumerate(DISTANCE_BAND_EDGES_M):
        if distance_m < edge:
            return band
    return len(DISTANCE_BAND_EDGES_M)


def local_hour(at: dt.datetime, tz: dt.tzinfo) -> int:
    return at.astimezone(tz).hour


def _cell_key(hour: int, band: int) -> str:
    return f"h{hour}:b{band}"


def _hour_key(hour: int) -> str:
    return f"h{hour}"


# Pooled cells: the hour and the hours either side, for hours with too few rides of their own.
def _pooled_cell_key(hour: int, band: int) -> str:
    return f"p{hour}:b{band}"


def _pooled_hour_key(hour: int) -> str:
    return f"p{hour}"


def _band_key(band: int) -> str:
    return f"b{band}"


def pace_for(params: EtaParams, *, hour: int, band: int) -> float:
    """Seconds per straight-line metre: the most specific cell that was learned."""
    keys = (_cell_key(hour, band), _pooled_cell_key(hour, band), _hour_key(hour), _pooled_hour_key(hour))
    for key in (*keys, _band_key(band), "all"):
        if key in params.pace_s_per_m:
            return params.pace_s_per_m[key]
    return DEFAULT_PACE_S_PER_M


def _ride_metres(grid_m: float) -> float:
    # Arrival is "within the radius", so the ride covers the distance to its edge.
    return max(grid_m - ARRIVAL_RADIUS_M, 1.0)


def travel_seconds(params: EtaParams, *, grid_m: float, at: dt.datetime, tz: dt.tzinfo) -> float:
    """Riding time for `grid_m` metres of street-grid distance starting at `at`."""
    pace = pace_for(params, hour=local_hour(at, tz), band=distance_band(grid_m))
    return _ride_metres(grid_m) * pace


def grid_distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Street-grid (Manhattan) distance on a local east/north frame: city blocks, not the crow's flight."""
    north = math.radians(b[0] - a[0]) * EARTH_RADIUS_M
    east = math.radians(b[1] - a[1]) * math.cos(math.radians((a[0] + b[0]) / 2)) * EARTH_RADIUS_M
    return abs(east) + abs(north)


def _grid_to(point: TrackPoint | tuple[float, float], destination: tuple[float, float]) -> float:
    return grid_distance_m((point.lat, point.lon) if isinstance(point, TrackPoint) else point, destination)


def distance_to(point: TrackPoint | tuple[float, float], destination: tuple[float, float]) -> float:
    lat, lon = (point.lat, point.lon) if isinstance(point, TrackPoint) else point
    return haversine_m(lat, lon, destination[0], destination[1])


def arrival_at(delivery: Delivery) -> dt.datetime | None:
    """When the rider first came within ARRIVAL_RADIUS_M of the door, if the track shows it."""
    for point in sorted(delivery.points, key=lambda p: p.recorded_at):
        if point.recorded_at >= delivery.dispatched_at and distance_to(point, delivery.destination) <= ARRIVAL_RADIUS_M:
            return min(point.recorded_at, delivery.delivered_at)
    return None


def _phase_durations(delivery: Delivery) -> dict[str, float]:
    marks = [delivery.paid_at, *(delivery.stage_times.get(stage) for stage in ("picking", "picked", "packed"))]
    marks.append(delivery.dispatched_at)
    durations = {}
    for phase, start, end in zip(PHASES, marks, marks[1:], strict=False):
        if start is not None and end is not None and end >= start:
            durations[phase] = (end - start).total_seconds()
    return durations


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def eta_fit(deliveries: Iterable[Delivery], *, tz: dt.tzinfo) -> EtaParams:
    """Learn pace per (hour, distance band), warehouse phase medians and the door handover."""
    deliveries = list(deliveries)
    params = EtaParams(deliveries=len(deliveries))
    if len(deliveries) < MIN_DELIVERIES:
        return params

    # cell -> delivery -> paces. Every delivery gets one vote per cell (the
    # median of its own points there): a rider stalled for ten minutes posts
    # forty points from one spot, and must not outvote forty normal rides.
    votes: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    phases: dict[str, list[float]] = defaultdict(list)
    handovers: list[float] = []
    samples = 0
    for number, delivery in enumerate(deliveries):
        for phase, seconds in _phase_durations(delivery).items():
            phases[phase].append(seconds)
        arrived = arrival_at(delivery)
        if arrived is not None:
            handovers.append((delivery.delivered_at - arrived).total_seconds())
        else:
            arrived = delivery.delivered_at - dt.timedelta(seconds=DEFAULT_HANDOVER_SECONDS)
        starts = [TrackPoint(*delivery.warehouse, delivery.dispatched_at)]
        starts += [p for p in delivery.points if delivery.dispatched_at <= p.recorded_at < arrived]
        for point in starts:
            if distance_to(point, delivery.destination) <= ARRIVAL_RADIUS_M:
                continue
            grid = _grid_to(point, delivery.destination)
            pace = (arrived - point.recorded_at).total_seconds() / _ride_metres(grid)
            band = distance_band(grid)
            hour = local_hour(point.recorded_at, tz)
            votes[_cell_key(hour, band)][number].append(pace)
            votes[_hour_key(hour)][number].append(pace)
            # Pooled cells also learn from the hours beside them: traffic
            # changes gradually, and pooling triples the data of thin hours.
            for neighbour in (hour - 1, hour, hour + 1):
                votes[_pooled_cell_key(neighbour % 24, band)][number].append(pace)
                votes[_pooled_hour_key(neighbour % 24)][number].append(pace)
            votes[_band_key(band)][number].append(pace)
            votes["all"][number].append(pace)
            samples += 1

    for key, by_delivery in votes.items():
        if sum(map(len, by_delivery.values())) >= MIN_CELL_SAMPLES and len(by_delivery) >= MIN_CELL_DELIVERIES:
            params.pace_s_per_m[key] = round(_median([_median(paces) for paces in by_delivery.values()]), 5)
    for phase, values in phases.items():
        if len(values) >= MIN_PHASE_SAMPLES:
            params.phase_seconds[phase] = round(_median(values), 1)
    if len(handovers) >= MIN_PHASE_SAMPLES:
        params.handover_seconds = round(_median(handovers), 1)
    params.samples = samples
    return params


def warehouse_remaining_seconds(
    params: EtaParams, *, stage: str, phase_started_at: dt.datetime, now: dt.datetime
) -> float:
    """Time left in the warehouse: the rest of the current phase plus every later phase."""
    phase = PHASE_OF_STAGE.get(stage or "", "queue")
    index = PHASES.index(phase)
    elapsed = max(0.0, (now - phase_started_at).total_seconds())
    current_left = max(0.0, params.phase_seconds[phase] - elapsed)
    return current_left + sum(params.phase_seconds[later] for later in PHASES[index + 1 :])


def eta_predict_delivering(
    params: EtaParams,
    *,
    now: dt.datetime,
    destination: tuple[float, float],
    warehouse: tuple[float, float],
    dispatched_at: dt.datetime | None,
    position: TrackPoint | None,
    tz: dt.tzinfo,
    arrived_at: dt.datetime | None = None,
) -> dt.datetime:
    """ETA of an order on the road, from its newest point (or the warehouse at dispatch).

    `arrived_at`: when the track first came within ARRIVAL_RADIUS_M of the
    door, if it has; the handover already under way is then counted down.
    """
    if position is not None:
        origin, base = (position.lat, position.lon), position.recorded_at
    else:
        origin, base = warehouse, dispatched_at or now
    at_door = distance_to(origin, destination) <= ARRIVAL_RADIUS_M
    if at_door and arrived_at is not None:
        eta = arrived_at + dt.timedelta(seconds=params.handover_seconds)
    else:
        ride = 0.0 if at_door else travel_seconds(params, grid_m=_grid_to(origin, destination), at=base, tz=tz)
        eta = base + dt.timedelta(seconds=ride + params.handover_seconds)
    return max(eta, now + dt.timedelta(seconds=MIN_REMAINING_SECONDS))


def track_arrived_at(points: Iterable[TrackPoint], destination: tuple[float, float]) -> dt.datetime | None:
    """When the rider reached the door: the start of the newest unbroken run of points within the radius."""
    arrived = None
    for point in sorted(points, key=lambda p: p.recorded_at):
        arrived = arrived or point.recorded_at if distance_to(point, destination) <= ARRIVAL_RADIUS_M else None
    return arrived


def eta_predict_paid(
    params: EtaParams,
    *,
    now: dt.datetime,
    destination: tuple[float, float],
    warehouse: tuple[float, float],
    stage: str,
    phase_started_at: dt.datetime,
    tz: dt.tzinfo,
) -> dt.datetime:
    """ETA of an order still in the warehouse: remaining phases, then the whole ride, then the door."""
    departure = now + dt.timedelta(
        seconds=warehouse_remaining_seconds(params, stage=stage, phase_started_at=phase_started_at, now=now)
    )
    travel = travel_seconds(params, grid_m=_grid_to(warehouse, destination), at=departure, tz=tz)
    return departure + dt.timedelta(seconds=travel + params.handover_seconds)
