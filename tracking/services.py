"""Rider GPS ingest: validated points become location events on the rider's delivering orders."""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from orders.models import Order, OrderStatus
from tracking.events import decimal6
from tracking.jobs import order_jobs_after_commit
from tracking.models import EventKind, OperatorType, Rider, TrackingEvent
from tracking.publish import rider_position_publish
from tracking.signals import tracking_events_bulk_created
from xiaoxiang import metrics
from xiaoxiang.geo import geohash_encode


@dataclass(frozen=True)
class LocationPoint:
    """One validated GPS point from the rider app."""

    client_id: str
    lat: float
    lon: float
    recorded_at: dt.datetime
    accuracy: float | None = None
    speed: float | None = None
    heading: float | None = None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    events: list[TrackingEvent] = field(default_factory=list)


@transaction.atomic
def location_points_ingest(*, rider_user: AbstractBaseUser, points: list[tuple[int, LocationPoint]]) -> IngestResult:
    """Store a batch of rider GPS points (live or an offline upload) with a constant number of queries.

    `points` are (index in the request, point) pairs that passed validation.
    Each point becomes a location event on every order the rider is
    delivering, in `recorded_at` order. A late batch fills history without
    moving the live position backwards.
    """
    result = IngestResult()
    # Lock order: rider row, then their delivering orders by id. All ingest
    # for one rider serialises here, so the duplicate check below cannot race
    # with a concurrent retry of the same batch.
    rider, _ = Rider.objects.select_for_update().get_or_create(
        user=rider_user, defaults={"display_name": rider_user.get_username()}
    )
    orders = list(
        Order.objects.select_for_update()
        .filter(rider=rider_user, status=OrderStatus.DELIVERING)
        .order_by("id")
        .only("id", "version", "status", "create_time", "dispatched_at")
    )
    existing: set[tuple[str, str]] = set()
    if orders:
        existing = set(
            TrackingEvent.objects.filter(
                order__in=orders, client_id__in={point.client_id for _, point in points}
            ).values_list("order_id", "client_id")
        )

    seen_client_ids: set[str] = set()
    applicable: list[tuple[int, LocationPoint]] = []
    for index, point in points:
        if point.client_id in seen_client_ids or any((order.id, point.client_id) in existing for order in orders):
            result.duplicates += 1
            continue
        seen_client_ids.add(point.client_id)
        if orders and all(point.recorded_at < order.create_time for order in orders):
            result.rejected.append({"index": index, "errors": {"recorded_at": ["Point is older than the order."]}})
            continue
        applicable.append((index, point))
    result.accepted = len(applicable)

    now = timezone.now()
    new_events: list[TrackingEvent] = []
    for order in orders:
        version = order.version
        for _, point in sorted(applicable, key=lambda pair: pair[1].recorded_at):
            if point.recorded_at < order.create_time:
                continue
            version += 1
            new_events.append(
                TrackingEvent(
                    order=order,
                    status=order.status,
                    kind=EventKind.LOCATION,
                    operator_id=str(rider_user.pk),
                    operator_type=OperatorType.RIDER,
                    latitude=decimal6(point.lat),
                    longitude=decimal6(point.lon),
                    geohash=geohash_encode(point.lat, point.lon),
                    recorded_at=point.recorded_at,
                    client_id=point.client_id,
                    accuracy=point.accuracy,
                    speed=point.speed,
                    heading=point.heading,
                    version=version,
                    create_time=now,
                )
            )
        if version != order.version:
            Order.objects.filter(pk=order.pk).update(version=F("version") + (version - order.version), update_time=now)
            order.version = version
    if new_events:
        TrackingEvent.objects.bulk_create(new_events)
    result.events = new_events

    newest = max((point for _, point in applicable), key=lambda point: point.recorded_at, default=None)
    fields = {"last_seen_at": now, "online": True}
    if newest is not None and (rider.last_recorded_at is None or newest.recorded_at > rider.last_recorded_at):
        fields.update(
            last_lat=newest.lat,
            last_lon=newest.lon,
            last_recorded_at=newest.recorded_at,
            geohash=geohash_encode(newest.lat, newest.lon),
        )
    Rider.objects.filter(pk=rider.pk).update(**fields)
    if "last_lat" in fields:
        for name, value in fields.items():
            setattr(rider, name, value)
        username, delivering = rider_user.get_username(), len(orders)
        transaction.on_commit(lambda: rider_position_publish(rider, username=username, delivering=delivering))
    if new_events:
        tracking_events_bulk_created.send(sender=TrackingEvent, events=new_events)
        order_jobs_after_commit({event.order_id for event in new_events}, debounced=True)
    metrics.ingest_lag_after_commit(point.recorded_at for _, point in applicable)
    return result


def location_max_future() -> dt.timedelta:
    return dt.timedelta(seconds=settings.LOCATION_MAX_FUTURE_SECONDS)
