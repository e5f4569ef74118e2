"""Staff pages: the live operations map and the small JSON reads behind it (shapes: tracking.ops)."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from orders.models import OrderStatus
from orders.selectors import orders_of_rider
from tracking import ops
from tracking.wire import iso


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
    return JsonResponse(ops.ops_state())


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
            "promised_at": iso(order.promised_at),
            "eta": iso(order.eta),
            "update_time": iso(order.update_time),
            "admin_url": reverse("admin:orders_order_change", args=[order.pk]),
            "page_url": reverse("orders:detail", args=[order.pk]),
        }
        for order in orders_of_rider(rider_id=rider_id)
    ]
    return JsonResponse({"rider_id": rider_id, "orders": orders})
