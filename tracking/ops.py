"""Reads for the operations map: one shape for its REST state, its socket snapshot and its pushes."""

from typing import Any

from django.db.models import Count, Q
from django.urls import reverse

from orders.models import OrderStatus, Warehouse
from tracking.models import Alert, Rider
from tracking.wire import alert_payload, rider_payload

OPS_RIDERS_MAX = 1000
OPS_ALERTS_MAX = 200


def ops_alert_payload(alert: Alert) -> dict[str, Any]:
    """An alert placed on the map: at the rider's last position, else the delivery address."""
    profile = getattr(alert.rider, "rider_profile", None) if alert.rider else None
    if profile is not None and profile.last_lat is not None:
        lat, lon = profile.last_lat, profile.last_lon
    else:
        lat, lon = alert.order.delivery_lat, alert.order.delivery_lon
    return {
        **alert_payload(alert),
        "rider_name": profile.display_name if profile else None,
        "lat": lat,
        "lon": lon,
        "admin_url": reverse("admin:tracking_alert_change", args=[alert.pk]),
    }


def ops_riders_active() -> list[dict[str, Any]]:
    """Riders that are online or carrying an order, with their last known position."""
    riders = (
        Rider.objects.select_related("user")
        .filter(user__is_active=True, last_lat__isnull=False, last_lon__isnull=False)
        .annotate(delivering=Count("user__rider_orders", filter=Q(user__rider_orders__status=OrderStatus.DELIVERING)))
        .filter(Q(online=True) | Q(delivering__gt=0))
        .order_by("display_name", "user_id")[:OPS_RIDERS_MAX]
    )
    return [rider_payload(rider, username=rider.user.get_username(), delivering=rider.delivering) for rider in riders]


def ops_alerts_open() -> list[dict[str, Any]]:
    """Open alerts, newest first."""
    alerts = (
        Alert.objects.select_related("order", "rider", "rider__rider_profile")
        .filter(resolved_at__isnull=True)
        .order_by("-opened_at", "-id")[:OPS_ALERTS_MAX]
    )
    return [ops_alert_payload(alert) for alert in alerts]


def ops_warehouses() -> list[dict[str, Any]]:
    return [
        {"id": place.pk, "name": place.name, "lat": float(place.latitude), "lon": float(place.longitude)}
        for place in Warehouse.objects.filter(active=True)
    ]


def ops_state() -> dict[str, Any]:
    """Everything the ops map starts from: riders, open alerts, warehouses."""
    return {"riders": ops_riders_active(), "alerts": ops_alerts_open(), "warehouses": ops_warehouses()}
