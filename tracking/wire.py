"""Wire shapes: how one event, rider or alert looks in every frame, REST read and cache entry.

Full detail; what a role may see of them is decided in tracking.role_views.
"""

import datetime as dt
from typing import Any

from tracking.models import Alert, EventKind, OperatorType, Rider, TrackingEvent
from tracking.quality import flags_read


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def utc_iso(value: dt.datetime) -> str:
    # Device times arrive with their own offset; the snapshot (read back from
    # the database) is in UTC, so events use UTC too and compare as strings.
    return value.astimezone(dt.UTC).isoformat()


def event_payload(event: TrackingEvent) -> dict[str, Any]:
    """One tracking event at full precision."""
    return {
        "id": event.id,
        "kind": event.kind,
        "status": event.status,
        "stage": event.stage or None,
        "lat": float(event.latitude) if event.latitude is not None else None,
        "lon": float(event.longitude) if event.longitude is not None else None,
        "recorded_at": utc_iso(event.recorded_at),
        "version": event.version,
        "operator_type": event.operator_type,
        "data": event.data or {},
        # Why a point is not trusted as a position (tracking/quality.py); [] for every other event.
        "quality_flags": flags_read(event.quality_flags),
    }


def location_payload(
    *,
    event_id: str,
    status: int,
    lat: float,
    lon: float,
    recorded_at: dt.datetime,
    version: int,
    quality_flags: list[str],
) -> dict[str, Any]:
    """`event_payload` of a rider's location event, from the values the ingest stored (no model instance)."""
    return {
        "id": event_id,
        "kind": EventKind.LOCATION.value,
        "status": status,
        "stage": None,
        "lat": lat,
        "lon": lon,
        "recorded_at": utc_iso(recorded_at),
        "version": version,
        "operator_type": OperatorType.RIDER.value,
        "data": {},
        "quality_flags": quality_flags,
    }


def rider_payload(rider: Rider, *, username: str, delivering: int) -> dict[str, Any]:
    """A rider on the ops map: the ops snapshot, its REST read and every position push."""
    return {
        "id": rider.user_id,
        "name": rider.display_name,
        "username": username,
        "lat": rider.last_lat,
        "lon": rider.last_lon,
        "recorded_at": iso(rider.last_recorded_at),
        "online": rider.online,
        "delivering": delivering,
        # Why an app went dark, as it last reported (None before its first report).
        "device": rider.device_state(),
    }


def alert_payload(alert: Alert) -> dict[str, Any]:
    """An alert: the staff snapshot's alert list, alert events and (with a place) the ops map."""
    return {
        "id": alert.id,
        "order": alert.order_id,
        "rider": alert.rider_id,
        "kind": alert.kind,
        "kind_display": alert.get_kind_display(),
        "message": alert.message,
        "data": alert.data or {},
        "opened_at": iso(alert.opened_at),
        "resolved_at": iso(alert.resolved_at),
    }
