"""Reads of tracking data."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.utils.dateparse import parse_datetime

from orders.models import Order, OrderStatus
from tracking.models import EventKind, Rider, TrackingEvent
from xiaoxiang.geo import geohash_encode, haversine_m

User = get_user_model()


def riders_available():
    """Online riders carrying fewer than RIDER_MAX_ACTIVE_ORDERS delivering orders."""
    return (
        Rider.objects.filter(online=True, user__is_active=True, user__groups__name="rider")
        .annotate(active=Count("user__rider_orders", filter=Q(user__rider_orders__status=OrderStatus.DELIVERING)))
        .filter(active__lt=settings.RIDER_MAX_ACTIVE_ORDERS)
        .select_related("user")
    )


def rider_nearest_available(*, lat: float, lon: float) -> Rider | None:
    """The nearest available rider, searched through the geohash index.

    Widens the geohash prefix (about 1.2 km, 5 km, 40 km, 160 km cells) until
    some riders match, then ranks those by real distance; riders that never
    reported a position come last.
    """
    candidates = riders_available()
    cell = geohash_encode(lat, lon, precision=6)
    for precision in (6, 5, 4, 3):
        nearby = list(candidates.filter(geohash__startswith=cell[:precision]))
        if nearby:
            return min(nearby, key=lambda rider: haversine_m(lat, lon, rider.last_lat, rider.last_lon))
    return candidates.order_by("active", "user_id").first()


def order_rider_position(*, order: Order) -> dict | None:
    """The newest position (by device time) recorded for this order; flagged points are no position."""
    event = (
        TrackingEvent.objects.for_order(order)
        .positions()
        .order_by("-recorded_at", "-version")
        .only("latitude", "longitude", "recorded_at")
        .first()
    )
    if event is None:
        archived = order_path_archived(order=order)
        if not archived:
            return None
        lat, lon, recorded_at, _ = archived[-1]
        return {"lat": lat, "lon": lon, "recorded_at": recorded_at}
    return {"lat": float(event.latitude), "lon": float(event.longitude), "recorded_at": event.recorded_at}


def order_timeline(*, order: Order) -> list[TrackingEvent]:
    return list(
        TrackingEvent.objects.for_order(order).filter(kind__in=[EventKind.STATUS, EventKind.STAGE]).order_by("version")
    )


def order_path(*, order: Order, with_flagged: bool = False) -> list[tuple]:
    """The rider's recorded points for this order as (lat, lon, recorded_at, quality_flags), in device-time order.

    Only the points fit to be a position, unless `with_flagged` (staff): then
    also those the GPS quality rule flagged, with their stored flags (for the
    others ''). Once the order's compact trajectory is archived
    (tracking/retention.py) it is the path: its location events are about to
    be dropped, or are gone.
    """
    archived = order_path_archived(order=order)
    if archived is not None:
        return archived
    events = TrackingEvent.objects.for_order(order)
    events = events.filter(kind=EventKind.LOCATION) if with_flagged else events.positions()
    return list(
        events.order_by("recorded_at", "version").values_list("latitude", "longitude", "recorded_at", "quality_flags")
    )


def order_path_archived(*, order: Order) -> list[tuple] | None:
    """The archived simplified path as (lat, lon, recorded_at, ''), or None when the order has no archive.

    The archive keeps only the points fit to be a position, so none is flagged.
    """
    if not order.trajectory_archive:
        return None
    return [(lat, lon, parse_datetime(recorded_at), "") for lat, lon, recorded_at in order.trajectory_archive["path"]]
