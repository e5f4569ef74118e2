"""Publishing committed changes to the Channels layer (best effort; the database is the truth)."""

import logging
from collections import defaultdict
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tracking.models import TrackingEvent

logger = logging.getLogger(__name__)

OPS_GROUP = "ops"


def order_group(order_id: str) -> str:
    """The one place that names an order's channel-layer group."""
    return f"order.{order_id}"


def notifications_group(user_id: int) -> str:
    return f"notifications.{user_id}"


def event_payload(event: TrackingEvent) -> dict[str, Any]:
    """The wire form of one tracking event (full precision; consumers filter by role)."""
    return {
        "id": event.id,
        "kind": event.kind,
        "status": event.status,
        "stage": event.stage or None,
        "lat": float(event.latitude) if event.latitude is not None else None,
        "lon": float(event.longitude) if event.longitude is not None else None,
        "recorded_at": event.recorded_at.isoformat(),
        "version": event.version,
        "operator_type": event.operator_type,
        "data": event.data or {},
    }


def group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # Push is best effort: heartbeats and resync bring clients back to
        # the database state, so a broken layer must not fail the write.
        logger.exception("channel-layer publish to %s failed", group)


def events_publish(events: list[TrackingEvent]) -> None:
    """Send committed events to their orders' groups, one message per order, in version order."""
    by_order: dict[str, list[TrackingEvent]] = defaultdict(list)
    for event in events:
        by_order[event.order_id].append(event)
    for order_id, order_events in by_order.items():
        order_events.sort(key=lambda event: event.version)
        group_send(
            order_group(order_id),
            {
                "type": "order.events",
                "order_id": order_id,
                "version": order_events[-1].version,
                "events": [event_payload(event) for event in order_events],
            },
        )


def rider_position_publish(position: dict[str, Any]) -> None:
    recorded_at = position.get("last_recorded_at")
    group_send(
        OPS_GROUP,
        {
            "type": "ops.rider",
            "rider": {
                "id": position["rider"],
                "name": position["name"],
                "lat": position["last_lat"],
                "lon": position["last_lon"],
                "recorded_at": recorded_at.isoformat() if recorded_at else None,
            },
        },
    )
