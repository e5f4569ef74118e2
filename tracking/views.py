"""Staff pages: the live operations map and the small JSON reads behind it."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from orders.models import OrderStatus, Warehouse
from orders.selectors import orders_of_rider
from tracking.models import Alert, Rider

OPS_RIDERS_MAX = 1000
OPS_ALERTS_MAX = 200


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def map_context(request: HttpRequest) -> dict[str, str]:
    """Template context processor: the map tile URL, for pages we do not render ourselves (the admin)."""
    return {"map_tile_url": settings.MAP_TILE_URL}


def staff_json(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """JSON for staff only: 401 for anonymous callers, 403 for everyone else (no login redirect)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
        if not (request.user.is_active and request.user.is_staff):
            return JsonResponse({"detail": "Staff only."}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


# Reads for the ops map. They are page-specific projections, so they live beside the page.
def ops_riders_active() -> list[dict[str, Any]]:
    """Riders that are online or carrying an order, with their last known position."""
    riders = (
        Rider.objects.select_related("user")
        .filter(user__is_active=True, last_lat__isnull=False, last_lon__isnull=False)
        .annotate(delivering=Count("user__rider_orders", filter=Q(user__rider_orders__status=OrderStatus.DELIVERING)))
        .filter(Q(online=True) | Q(delivering__gt=0))
        .order_by("display_name")[:OPS_RIDERS_MAX]
    )
    return [
        {
            "id": rider.user_id,
            "name": rider.display_name,
            "username": rider.user.get_username(),
            "lat": rider.last_lat,
            "lon": rider.last_lon,
            "recorded_at": _iso(rider.last_recorded_at),
            "online": rider.online,
            "delivering": rider.delivering,
            "device": rider.device_state(),
        }
        for rider in riders
    ]


def ops_alerts_open() -> list[dict[str, Any]]:
    """Open alerts, newest first, placed at the rider's last position (else the delivery address)."""
    alerts = (
        Alert.objects.select_related("order", "rider", "rider__rider_profile")
        .filter(resolved_at__isnull=True)
        .order_by("-opened_at")[:OPS_ALERTS_MAX]
    )
    rows = []
    for alert in alerts:
        profile = getattr(alert.rider, "rider_profile", None) if alert.rider else None
        if profile is not None and profile.last_lat is not None:
            lat, lon = profile.last_lat, profile.last_lon
        else:
            lat, lon = alert.order.delivery_lat, alert.order.delivery_lon
        rows.append(
            {
                "id": alert.id,
                "kind": alert.kind,
                "kind_display": alert.get_kind_display(),
                "message": alert.message,
                "order_id": alert.order_id,
                "rider_id": alert.rider_id,
                "rider_name": profile.display_name if profile else None,
                "opened_at": _iso(alert.opened_at),
                "lat": lat,
                "lon": lon,
                "admin_url": reverse("admin:tracking_alert_change", args=[alert.pk]),
            }
        )
    return rows


def ops_warehouses() -> list[dict[str, Any]]:
    return [
        {"id": place.pk, "name": place.name, "lat": float(place.latitude), "lon": float(place.longitude)}
        for place in Warehouse.objects.filter(active=True)
    ]


@staff_member_required
def ops_map(request: HttpRequest) -> HttpResponse:
    config = {
        "tileUrl": settings.MAP_TILE_URL,
        "stateUrl": reverse("tracking:ops-state"),
        "riderOrdersUrl": reverse("tracking:ops-rider-orders", args=[0]),
    }
    return render(request, "tracking/ops_map.html", {"ops_config": config})


@require_GET
@staff_json
def ops_state(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"riders": ops_riders_active(), "alerts": ops_alerts_open(), "warehouses": ops_warehouses()})


@require_GET
@staff_json
def ops_rider_orders(request: HttpRequest, rider_id: int) -> JsonResponse:
    orders = [
        {
            "id": order.id,
            "status": order.status,
            "status_display": OrderStatus(order.status).label,
            "warehouse": order.warehouse.name,
            "delivery_address": order.delivery_address,
            "promised_at": _iso(order.promised_at),
            "eta": _iso(order.eta),
            "update_time": _iso(order.update_time),
            "admin_url": reverse("admin:orders_order_change", args=[order.pk]),
            "page_url": reverse("orders:detail", args=[order.pk]),
        }
        for order in orders_of_rider(rider_id=rider_id)
    ]
    return JsonResponse({"rider_id": rider_id, "orders": orders})
