"""Simulated riders and warehouse: trip plans shared by `simulate` (live, over HTTP) and
`simulate --history` (completed deliveries written through the services with synthetic times).

Plans are in *simulated seconds*; `speed` compresses them into wall-clock (or
synthetic) time. Stalls and offline gaps are sized in wall-clock seconds, so
they trip the server's alert thresholds whatever the speed.
"""

import datetime as dt
import itertools
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.test.utils import override_settings
from django.utils import timezone

from xiaoxiang.geo import EARTH_RADIUS_M

TICK_SECONDS = 15.0
JITTER_M = 3.0

# Street speed (m/s) by local hour: rush hours crawl, nights are quick.
RUSH_HOURS = {7, 8, 9, 17, 18, 19}
LUNCH_HOURS = {11, 12, 13}
NIGHT_HOURS = {22, 23, 0, 1, 2, 3, 4, 5}


def street_speed_mps(hour: int) -> float:
    if hour in RUSH_HOURS:
        return 3.3
    if hour in LUNCH_HOURS:
        return 4.2
    if hour in NIGHT_HOURS:
        return 6.0
    return 4.8


def to_local(origin: tuple[float, float], point: tuple[float, float]) -> tuple[float, float]:
    """(east, north) metres of `point` from `origin`."""
    return (
        math.radians(point[1] - origin[1]) * math.cos(math.radians(origin[0])) * EARTH_RADIUS_M,
        math.radians(point[0] - origin[0]) * EARTH_RADIUS_M,
    )


def from_local(origin: tuple[float, float], xy: tuple[float, float]) -> tuple[float, float]:
    return (
        origin[0] + math.degrees(xy[1] / EARTH_RADIUS_M),
        origin[1] + math.degrees(xy[0] / (EARTH_RADIUS_M * math.cos(math.radians(origin[0])))),
    )


def offset(origin: tuple[float, float], *, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    angle = math.radians(bearing_deg)
    return from_local(origin, (math.sin(angle) * distance_m, math.cos(angle) * distance_m))


def street_path(
    start: tuple[float, float],
    end: tuple[float, float],
    rng: random.Random,
    *,
    block_m: tuple[float, float] = (150, 450),
) -> list[tuple[float, float]]:
    """A Manhattan-like path: alternating east-west and north-south legs of a few blocks each."""
    x, y = 0.0, 0.0
    end_x, end_y = to_local(start, end)
    corners = [(x, y)]
    along_x = rng.random() < 0.5
    while abs(end_x - x) > 1 or abs(end_y - y) > 1:
        remaining = end_x - x if along_x else end_y - y
        if abs(remaining) > 1:
            leg = math.copysign(min(abs(remaining), rng.uniform(*block_m)), remaining)
            if along_x:
                x += leg
            else:
                y += leg
            corners.append((x, y))
        along_x = not along_x
    return [from_local(start, corner) for corner in corners]


def detour_path(start: tuple[float, float], end: tuple[float, float], rng: random.Random) -> list[tuple[float, float]]:
    """A wrong turn: part of the way, then several blocks away from the destination, then back."""
    full = street_path(start, end, rng)
    split = max(1, len(full) // 3)
    turn = full[split]
    end_x, end_y = to_local(turn, end)
    # Head away along the axis that points most toward the destination.
    if abs(end_x) > abs(end_y):
        away = (-math.copysign(rng.uniform(600, 1000), end_x), 0.0)
    else:
        away = (0.0, -math.copysign(rng.uniform(600, 1000), end_y))
    wrong = from_local(turn, away)
    return [*full[: split + 1], wrong, *street_path(wrong, end, rng)[1:]]


def path_length_m(path: list[tuple[float, float]]) -> float:
    return sum(math.hypot(*to_local(a, b)) for a, b in itertools.pairwise(path))


def position_along(path: list[tuple[float, float]], distance_m: float) -> tuple[float, float]:
    travelled = 0.0
    for a, b in itertools.pairwise(path):
        dx, dy = to_local(a, b)
        leg = math.hypot(dx, dy)
        if leg > 0 and travelled + leg >= distance_m:
            fraction = (distance_m - travelled) / leg
            return from_local(a, (dx * fraction, dy * fraction))
        travelled += leg
    return path[-1]


def jitter(point: tuple[float, float], rng: random.Random) -> tuple[float, float]:
    return offset(point, bearing_deg=rng.uniform(0, 360), distance_m=rng.uniform(0, JITTER_M))


@dataclass(frozen=True)
class PlannedPoint:
    at_s: float  # simulated seconds since dispatch
    lat: float
    lon: float
    offline: bool = False  # cached on the phone, uploaded with the batch when the gap ends


@dataclass
class TripPlan:
    points: list[PlannedPoint]
    arrive_s: float
    deliver_s: float
    incidents: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Incidents:
    """How often trips misbehave, and for how long (wall-clock seconds)."""

    stall_chance: float = 0.15
    detour_chance: float = 0.15
    offline_chance: float = 0.15
    stall_seconds: float = 300.0
    offline_seconds: tuple[float, float] = (45.0, 240.0)


def trip_plan(
    *,
    start: tuple[float, float],
    destination: tuple[float, float],
    hour: int,
    rng: random.Random,
    speed: float = 1.0,
    incidents: Incidents = Incidents(),
    force: frozenset[str] = frozenset(),
) -> TripPlan:
    """Where the rider is at every tick from pickup to handover, with the trip's incidents.

    `force` names incidents ("detour", "stall", "offline") this trip has for sure.
    """
    detour = "detour" in force or rng.random() < incidents.detour_chance
    path = detour_path(start, destination, rng) if detour else street_path(start, destination, rng)
    length = path_length_m(path)
    street_speed = street_speed_mps(hour) * rng.uniform(0.85, 1.15)
    ride_s = length / street_speed
    stalls = "stall" in force or rng.random() < incidents.stall_chance
    stall_at = rng.uniform(0.2, 0.7) * ride_s if stalls else None
    stall_s = incidents.stall_seconds * speed if stall_at is not None else 0.0
    arrive_s = ride_s + stall_s
    deliver_s = arrive_s + rng.uniform(60, 180)
    offline_window = None
    if "offline" in force:
        # The longest gap, early: long enough for the offline alert on a short ride.
        gap = incidents.offline_seconds[1] * speed
        begin = 0.1 * arrive_s
        offline_window = (begin, min(begin + gap, arrive_s))
    elif rng.random() < incidents.offline_chance:
        gap = rng.uniform(*incidents.offline_seconds) * speed
        begin = rng.uniform(0.1, 0.6) * arrive_s
        offline_window = (begin, min(begin + gap, arrive_s))

    points = []
    at = 0.0
    while at < deliver_s:
        if at >= arrive_s:
            lat, lon = jitter(destination, rng)
        elif stall_at is not None and stall_at <= at < stall_at + stall_s:
            lat, lon = jitter(position_along(path, stall_at * street_speed), rng)
        else:
            moving_s = at - (stall_s if stall_at is not None and at >= stall_at + stall_s else 0.0)
            lat, lon = position_along(path, moving_s * street_speed)
        offline = offline_window is not None and offline_window[0] <= at < offline_window[1]
        points.append(PlannedPoint(at, round(lat, 6), round(lon, 6), offline))
        at += TICK_SECONDS
    incidents_seen = [
        name
        for name, happened in (("detour", detour), ("stall", stall_at is not None), ("offline", offline_window))
        if happened
    ]
    return TripPlan(points=points, arrive_s=arrive_s, deliver_s=deliver_s, incidents=incidents_seen)


def warehouse_plan(rng: random.Random) -> list[tuple[str, float]]:
    """Simulated seconds before each warehouse step: start picking, picked, packed, dispatch."""
    return [
        ("picking", rng.uniform(20, 120)),
        ("picked", rng.uniform(120, 420)),
        ("packed", rng.uniform(60, 180)),
        ("dispatch", rng.uniform(20, 120)),
    ]


def destination_near(warehouse: tuple[float, float], rng: random.Random) -> tuple[float, float]:
    return offset(warehouse, bearing_deg=rng.uniform(0, 360), distance_m=rng.uniform(600, 3500))


class SyntheticClock:
    """timezone.now() for code run inside `running()`: the history is written as if it happened then."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def at(self, moment: dt.datetime) -> None:
        self.now = max(self.now, moment)

    @contextmanager
    def running(self) -> Iterator[None]:
        # The services and the models' auto_now fields read Django's clock, and
        # the history must be written as the past: swap that clock for the
        # synthetic one while this command (single-threaded) writes, then put
        # it back.
        real_now = timezone.now
        timezone.now = lambda: self.now
        try:
            yield
        finally:
            timezone.now = real_now


def history_generate(
    *,
    count: int,
    customer: AbstractBaseUser,
    operator: AbstractBaseUser,
    rider: AbstractBaseUser,
    speed: float = 1.0,
    seed: int = 7,
    end: dt.datetime | None = None,
) -> int:
    """Write `count` completed deliveries ending before `end`, spread over the hours of the day.

    Goes through the real lifecycle and ingest services, with timezone.now()
    moved to each synthetic moment and jobs and mail switched off: this is
    the past, not the present. Returns how many deliveries were written.
    """
    from notifications.services import notifications_mark_read_before
    from orders import services as order_services
    from orders.models import Product
    from tracking.jobs import jobs_suspended
    from tracking.services import LocationPoint, location_points_ingest

    rng = random.Random(seed)  # noqa: S311  (a simulation, not cryptography)
    if end is None:
        # Anchored to the start of today (local time), not to now: the same seed
        # then yields the same hours of the day, so the history and a backtest
        # on it are reproducible whatever the clock says.
        end = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    # 37 minutes apart: not a divisor of a day, so the orders visit every hour.
    spacing = dt.timedelta(minutes=37)
    skus = list(Product.objects.filter(active=True).values_list("sku", flat=True)[:6])
    tz = timezone.get_current_timezone()
    home = operator.warehouse_operator.warehouse
    warehouse = (float(home.latitude), float(home.longitude))
    written = 0
    with (
        jobs_suspended(),
        override_settings(EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend"),
    ):
        for number in range(count):
            clock = SyntheticClock(end - spacing * (count - number))
            with clock.running():
                destination = destination_near(warehouse, rng)
                picked = rng.sample(skus, k=min(2, len(skus)))
                order = order_services.order_create(
                    customer=customer,
                    items=[{"sku": sku, "quantity": rng.randint(1, 3)} for sku in picked],
                    delivery_address=f"模拟地址 {number}",
                    delivery_lat=destination[0],
                    delivery_lon=destination[1],
                )
                warehouse = (float(order.warehouse.latitude), float(order.warehouse.longitude))
                clock.advance(rng.uniform(10, 60) / speed)
                order_services.order_pay(order_id=order.pk, customer=customer)
                for step, wait_s in warehouse_plan(rng):
                    clock.advance(wait_s / speed)
                    if step == "dispatch":
                        order_services.order_dispatch(
                            order_id=order.pk, operator=operator, rider_username=rider.username
                        )
                    else:
                        order_services.order_stage_report(order_id=order.pk, operator=operator, stage=step)
                dispatched_at = clock.now
                plan = trip_plan(
                    start=warehouse,
                    destination=destination,
                    hour=dispatched_at.astimezone(tz).hour,
                    rng=rng,
                    speed=speed,
                )
                batch: list[tuple[int, LocationPoint]] = []
                for index, point in enumerate(plan.points):
                    recorded_at = dispatched_at + dt.timedelta(seconds=point.at_s / speed)
                    batch.append((index, LocationPoint(f"h{order.pk[:8]}-{index}", point.lat, point.lon, recorded_at)))
                    if len(batch) == 8 or index == len(plan.points) - 1:
                        clock.at(recorded_at)
                        location_points_ingest(rider_user=rider, points=batch)
                        batch = []
                clock.at(dispatched_at + dt.timedelta(seconds=plan.deliver_s / speed))
                order_services.order_mark_delivered(order_id=order.pk, rider=rider)
            written += 1
    notifications_mark_read_before(users=[customer, operator, rider], before=end)
    return written
