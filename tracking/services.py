"""Rider GPS ingest: validated points become location events on the rider's delivering orders."""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from orders.models import Order, OrderStatus
from tracking import quality
from tracking.eta import TrackPoint
from tracking.events import decimal6
from tracking.jobs import points_debounce_claims, points_jobs_enqueue
from tracking.models import EventKind, OperatorType, Rider, TrackingEvent
from tracking.publish import points_publish
from tracking.wire import location_payload, rider_payload
from xiaoxiang import metrics
from xiaoxiang.geo import geohash_encode
from xiaoxiang.ids import new_id


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
    flagged: int = 0  # of the accepted: stored, but not trusted as a position (tracking/quality.py)
    rejected: list[dict[str, Any]] = field(default_factory=list)


@transaction.atomic
def location_points_ingest(*, rider_user: AbstractBaseUser, points: list[tuple[int, LocationPoint]]) -> IngestResult:
    """Store a batch of rider GPS points (live or an offline upload) with a constant number of queries.

    `points` are (index in the request, point) pairs that passed validation.
    Each point becomes a location event on every order the rider is
    delivering, in `recorded_at` order. A late batch fills history without
    moving the live position backwards. A point the GPS quality rule flags
    is stored with its flags and does not move the live position at all.
    """
    result = IngestResult()
    # Lock order: rider row, then their delivering orders by id. All ingest
    # for one rider serialises here, so the duplicate check of the insert
    # cannot race with a concurrent retry of the same batch.
    rider, _ = Rider.objects.select_for_update().get_or_create(
        user=rider_user, defaults={"display_name": rider_user.get_username()}
    )
    orders = list(
        Order.objects.select_for_update()
        .filter(rider=rider_user, status=OrderStatus.DELIVERING)
        .order_by("id")
        .only("id", "version", "status", "create_time")
    )

    seen_client_ids: set[str] = set()
    applicable: list[LocationPoint] = []
    for index, point in points:
        if point.client_id in seen_client_ids:
            result.duplicates += 1
            continue
        seen_client_ids.add(point.client_id)
        # Such a point was never stored on these orders, so it is no duplicate either.
        if orders and all(point.recorded_at < order.create_time for order in orders):
            result.rejected.append({"index": index, "errors": {"recorded_at": ["Point is older than the order."]}})
            continue
        applicable.append(point)
    applicable.sort(key=lambda point: point.recorded_at)
    # Each point against the rider's previous accepted one: the live position, then the batch's own.
    live = None
    if rider.last_recorded_at is not None and rider.last_lat is not None and rider.last_lon is not None:
        live = TrackPoint(rider.last_lat, rider.last_lon, rider.last_recorded_at)
    flags = quality.batch_flags(applicable, previous=live, thresholds=quality.quality_thresholds())
    flags_by_client_id = {
        point.client_id: quality.flags_stored(found) for point, found in zip(applicable, flags, strict=True)
    }

    now = timezone.now()
    rows = []
    for point in applicable:
        stored_at = (decimal6(point.lat), decimal6(point.lon), geohash_encode(point.lat, point.lon))
        point_flags = flags_by_client_id[point.client_id]
        rows += [
            _EventRow(new_id(), order, point, *stored_at, point_flags)
            for order in orders
            if point.recorded_at >= order.create_time
        ]
    stored = _location_events_store(rows, orders=orders, operator_id=str(rider_user.pk), now=now) if rows else []
    if orders:
        stored_client_ids = {row.point.client_id for row, _ in stored}
        accepted = [point for point in applicable if point.client_id in stored_client_ids]
    else:
        accepted = applicable  # tracked on the rider only
    result.accepted = len(accepted)
    result.duplicates += len(applicable) - len(accepted)
    trusted = [point for point in accepted if not flags_by_client_id[point.client_id]]
    result.flagged = len(accepted) - len(trusted)

    newest = max(trusted, key=lambda point: point.recorded_at, default=None)
    fields = {"last_seen_at": now, "online": True}
    if newest is not None and (rider.last_recorded_at is None or newest.recorded_at > rider.last_recorded_at):
        fields.update(
            last_lat=newest.lat,
            last_lon=newest.lon,
            last_recorded_at=newest.recorded_at,
            geohash=geohash_encode(newest.lat, newest.lon),
        )
    Rider.objects.filter(pk=rider.pk).update(**fields)

    order_points: dict[str, list[dict]] = {}
    for row, version in sorted(stored, key=lambda pair: (pair[0].order.pk, pair[1])):
        order_points.setdefault(row.order.pk, []).append(
            location_payload(
                event_id=row.id,
                status=row.order.status,
                lat=float(row.latitude),
                lon=float(row.longitude),
                recorded_at=row.point.recorded_at,
                version=version,
                quality_flags=quality.flags_read(row.quality_flags),
            )
        )
    rider_message = None
    if "last_lat" in fields:
        for name, value in fields.items():
            setattr(rider, name, value)
        rider_message = rider_payload(rider, username=rider_user.get_username(), delivering=len(orders))
    if order_points or rider_message is not None:
        claims = points_debounce_claims(order_points)

        def after_commit() -> None:
            # One send for the orders' events, the ops map and the ETA debounce (tracking.publish.points_publish).
            points_jobs_enqueue(points_publish(order_points, update_time=now, rider=rider_message, claims=claims))

        # A rolled-back write never reaches a watcher: on_commit drops the callback.
        transaction.on_commit(after_commit)
    metrics.ingest_lag_after_commit(point.recorded_at for point in accepted)
    metrics.ingest_flagged(quality.flags_read(flags_by_client_id[point.client_id]) for point in accepted)
    return result


@dataclass(frozen=True, slots=True)
class _EventRow:
    """A location event to store: one point on one order, with its id and stored coordinates."""

    id: str
    order: Order
    point: LocationPoint
    latitude: Decimal
    longitude: Decimal
    geohash: str
    quality_flags: str


def _location_events_store(
    rows: list[_EventRow], *, orders: list[Order], operator_id: str, now: dt.datetime
) -> list[tuple[_EventRow, int]]:
    """Insert the rows that are not stored yet, versioned per order in the given order; bump the orders' versions.

    Returns the stored rows with their versions. The orders are locked by the
    caller. A point stored on any of the orders is a duplicate on all of them.
    """
    if connection.vendor == "postgresql":
        return _location_events_store_postgresql(rows, orders=orders, operator_id=operator_id, now=now)
    existing = set(
        TrackingEvent.objects.filter(order__in=orders, client_id__in={row.point.client_id for row in rows}).values_list(
            "client_id", flat=True
        )
    )
    stored: list[tuple[_EventRow, int]] = []
    for order in orders:
        version = order.version
        for row in rows:
            if row.order is order and row.point.client_id not in existing:
                version += 1
                stored.append((row, version))
        if version != order.version:
            Order.objects.filter(pk=order.pk).update(version=version, update_time=now)
    TrackingEvent.objects.bulk_create(
        [
            TrackingEvent(
                id=row.id,
                order=row.order,
                status=row.order.status,
                kind=EventKind.LOCATION,
                operator_id=operator_id,
                operator_type=OperatorType.RIDER,
                latitude=row.latitude,
                longitude=row.longitude,
                geohash=row.geohash,
                recorded_at=row.point.recorded_at,
                client_id=row.point.client_id,
                accuracy=row.point.accuracy,
                speed=row.point.speed,
                heading=row.point.heading,
                quality_flags=row.quality_flags,
                version=version,
                create_time=now,
            )
            for row, version in stored
        ]
    )
    return stored


# One statement stores a whole batch: the rows travel as arrays; a point
# already stored on one of the rider's orders is skipped (the rider lock makes
# this check exact); the rest are numbered per order in the given order and
# inserted; the unique (order, client_id, order_created_at) index stays the guarantee (ON
# CONFLICT DO NOTHING); and each order's version moves to its newest event.
_STORE_SQL = """
WITH candidate AS (
    SELECT point.*, row_number() OVER (PARTITION BY point.order_id ORDER BY point.position) AS step
    FROM unnest(
        %(ids)s::varchar[], %(order_ids)s::varchar[], %(client_ids)s::varchar[], %(latitudes)s::numeric[],
        %(longitudes)s::numeric[], %(geohashes)s::varchar[], %(recorded_at)s::timestamptz[],
        %(accuracies)s::float8[], %(speeds)s::float8[], %(headings)s::float8[], %(quality_flags)s::varchar[]
    ) WITH ORDINALITY
        AS point(
            id, order_id, client_id, latitude, longitude, geohash, recorded_at, accuracy, speed, heading,
            quality_flags, position
        )
    WHERE NOT EXISTS (
        SELECT 1 FROM order_tracking stored
        WHERE stored.order_id = ANY(%(orders)s::varchar[]) AND stored.client_id = point.client_id
            -- The partition key of these orders: PostgreSQL reads only their partitions (docs/data.md).
            AND stored.order_created_at = ANY(%(orders_created_at)s::timestamptz[])
    )
), inserted AS (
    INSERT INTO order_tracking (
        id, order_id, status, kind, stage, address, operator_id, operator_type, latitude, longitude, geohash,
        recorded_at, client_id, accuracy, speed, heading, quality_flags, data, version, create_time, order_created_at
    )
    SELECT candidate.id, candidate.order_id, orders.status, %(kind)s, '', '', %(operator_id)s, %(operator_type)s,
        candidate.latitude, candidate.longitude, candidate.geohash, candidate.recorded_at, candidate.client_id,
        candidate.accuracy, candidate.speed, candidate.heading, candidate.quality_flags, '{}',
        orders.version + candidate.step, %(now)s, orders.create_time
    FROM candidate JOIN orders ON orders.id = candidate.order_id
    ON CONFLICT (order_id, client_id, order_created_at) WHERE client_id IS NOT NULL DO NOTHING
    RETURNING id, order_id, version
), bumped AS (
    UPDATE orders SET version = newest.version, update_time = %(now)s
    FROM (SELECT order_id, max(version) AS version FROM inserted GROUP BY order_id) AS newest
    WHERE orders.id = newest.order_id
)
SELECT id, version FROM inserted
"""


def _location_events_store_postgresql(
    rows: list[_EventRow], *, orders: list[Order], operator_id: str, now: dt.datetime
) -> list[tuple[_EventRow, int]]:
    params = {
        "ids": [row.id for row in rows],
        "order_ids": [row.order.pk for row in rows],
        "client_ids": [row.point.client_id for row in rows],
        "latitudes": [row.latitude for row in rows],
        "longitudes": [row.longitude for row in rows],
        "geohashes": [row.geohash for row in rows],
        "recorded_at": [row.point.recorded_at for row in rows],
        "accuracies": [row.point.accuracy for row in rows],
        "speeds": [row.point.speed for row in rows],
        "headings": [row.point.heading for row in rows],
        "quality_flags": [row.quality_flags for row in rows],
        "orders": [order.pk for order in orders],
        "orders_created_at": [order.create_time for order in orders],
        "kind": EventKind.LOCATION.value,
        "operator_id": operator_id,
        "operator_type": OperatorType.RIDER.value,
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(_STORE_SQL, params)
        versions = dict(cursor.fetchall())
    return [(row, versions[row.id]) for row in rows if row.id in versions]


def location_max_future() -> dt.timedelta:
    return dt.timedelta(seconds=settings.LOCATION_MAX_FUTURE_SECONDS)
