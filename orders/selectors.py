"""Reads of orders: who may see what, and the order snapshot (REST, WebSocket, cache)."""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import QuerySet

from orders.errors import NotFound
from orders.models import STATUS_NAMES, Order, OrderStatus, Product, Stage
from tracking.models import Alert
from tracking.selectors import order_rider_position, order_timeline

ROLE_STAFF = "staff"
ROLE_CUSTOMER = "customer"
ROLE_RIDER = "rider"
ROLE_WAREHOUSE = "warehouse"


def user_role(user: AbstractBaseUser) -> str | None:
    """The role a user acts in: staff, or their first role group."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_staff:
        return ROLE_STAFF
    names = {group.name for group in user.groups.all()}
    for role in (ROLE_WAREHOUSE, ROLE_RIDER, ROLE_CUSTOMER):
        if role in names:
            return role
    return None


def orders_visible_to(user: AbstractBaseUser) -> QuerySet[Order]:
    """Owner, assigned rider, the order's warehouse, or staff."""
    role = user_role(user)
    orders = Order.objects.select_related("warehouse", "rider", "rider__rider_profile", "user")
    if role == ROLE_STAFF:
        return orders
    if role == ROLE_WAREHOUSE:
        warehouse_id = getattr(getattr(user, "warehouse_operator", None), "warehouse_id", None)
        return orders.filter(warehouse_id=warehouse_id)
    if role == ROLE_RIDER:
        return orders.filter(rider=user)
    if role == ROLE_CUSTOMER:
        return orders.filter(user=user)
    return orders.none()


def order_get_for_user(*, user: AbstractBaseUser, order_id: str) -> Order:
    """The order if the user may see it; NotFound otherwise (never a leak of its existence)."""
    order = orders_visible_to(user).filter(pk=order_id).first()
    if order is None:
        raise NotFound()
    return order


def viewer_role(*, user: AbstractBaseUser, order: Order) -> str:
    """How a user who may see this order sees it (the owner always sees it as a customer)."""
    if user.is_staff:
        return ROLE_STAFF
    if order.user_id == user.pk:
        return ROLE_CUSTOMER
    if order.rider_id == user.pk:
        return ROLE_RIDER
    return ROLE_WAREHOUSE


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _rider_name(order: Order) -> str | None:
    if order.rider is None:
        return None
    profile = getattr(order.rider, "rider_profile", None)
    return profile.display_name if profile else order.rider.get_username()


def timeline_entry(*, kind: str, status: int, stage: str | None, time) -> dict[str, Any]:
    label = Stage(stage).label if stage else OrderStatus(status).label
    return {"kind": kind, "status": status, "stage": stage or None, "time": _iso(time), "label": label}


def order_snapshot_build(*, order: Order) -> dict[str, Any]:
    """The full (staff-level) snapshot of an order, JSON-ready."""
    rider_profile = getattr(order.rider, "rider_profile", None) if order.rider else None
    position = order_rider_position(order=order)
    return {
        "id": order.id,
        "status": order.status,
        "status_name": STATUS_NAMES[OrderStatus(order.status)],
        "status_display": OrderStatus(order.status).label,
        "stage": order.stage or None,
        "version": order.version,
        "total_amount": str(order.total_amount),
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": str(item.unit_price),
                "line_total": str(item.line_total),
            }
            for item in order.items.all()
        ],
        "create_time": _iso(order.create_time),
        "update_time": _iso(order.update_time),
        "promised_at": _iso(order.promised_at),
        "eta": _iso(order.eta),
        "warehouse": {
            "name": order.warehouse.name,
            "lat": float(order.warehouse.latitude),
            "lon": float(order.warehouse.longitude),
        },
        "delivery": {"address": order.delivery_address, "lat": order.delivery_lat, "lon": order.delivery_lon},
        "rider": None
        if order.rider is None
        else {
            "username": order.rider.get_username(),
            "name": _rider_name(order),
            "phone": rider_profile.phone if rider_profile else "",
        },
        "rider_position": None
        if position is None
        else {"lat": position["lat"], "lon": position["lon"], "recorded_at": _iso(position["recorded_at"])},
        "timeline": [
            timeline_entry(kind=event.kind, status=event.status, stage=event.stage, time=event.recorded_at)
            for event in order_timeline(order=order)
        ],
        "alerts": [
            {
                "id": alert.id,
                "kind": alert.kind,
                "message": alert.message,
                "opened_at": _iso(alert.opened_at),
                "resolved_at": _iso(alert.resolved_at),
            }
            for alert in Alert.objects.filter(order=order).order_by("opened_at", "id")
        ],
    }


def snapshot_cache_key(order_id: str) -> str:
    return f"order-snapshot:{order_id}"


def order_snapshot(*, order: Order) -> dict[str, Any]:
    """The full snapshot, from the cache when it is at the order's current version."""
    cached = cache.get(snapshot_cache_key(order.id))
    if cached is not None and cached["version"] == order.version:
        return cached
    snapshot = order_snapshot_build(order=order)
    cache.set(snapshot_cache_key(order.id), snapshot, settings.SNAPSHOT_CACHE_SECONDS)
    return snapshot


def coarse_position(position: dict[str, Any] | None) -> dict[str, Any] | None:
    if position is None:
        return None
    return {**position, "lat": round(position["lat"], 4), "lon": round(position["lon"], 4)}


def snapshot_for_role(snapshot: dict[str, Any], role: str, *, status: int) -> dict[str, Any]:
    """Filter a full snapshot (or a `changes` dict) for a viewer role; `status` is the order's current status.

    Customers see the rider's display name only, and the rider position only
    while delivering, coarsened to 4 decimals. Only staff see alerts.
    """
    filtered = dict(snapshot)
    if role != ROLE_STAFF:
        filtered.pop("alerts", None)
    if role == ROLE_CUSTOMER:
        if filtered.get("rider"):
            filtered["rider"] = {"name": filtered["rider"]["name"]}
        if "rider_position" in filtered:
            delivering = status == OrderStatus.DELIVERING
            filtered["rider_position"] = coarse_position(filtered["rider_position"]) if delivering else None
    return filtered


def products_list() -> QuerySet[Product]:
    return Product.objects.filter(active=True).order_by("sku")


def orders_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Order]:
    """The caller's visible orders, newest first, with their items."""
    return orders_visible_to(user).prefetch_related("items").order_by("-create_time", "id")


def warehouse_orders_to_prepare(*, user: AbstractBaseUser) -> QuerySet[Order]:
    """Paid orders of the operator's warehouse, oldest first (the picking queue)."""
    return (
        orders_visible_to(user)
        .filter(status=OrderStatus.PAID)
        .prefetch_related("items")
        .order_by("paid_at", "create_time", "id")
    )


def rider_orders_delivering(*, user: AbstractBaseUser) -> QuerySet[Order]:
    """The rider's delivering orders, in dispatch order."""
    return (
        orders_visible_to(user)
        .filter(status=OrderStatus.DELIVERING)
        .prefetch_related("items")
        .order_by("dispatched_at", "id")
    )


def orders_of_rider(*, rider_id: int, limit: int = 20) -> list[Order]:
    """A rider's orders for the ops map: delivering first, then the latest others (staff only)."""
    orders = Order.objects.select_related("warehouse").filter(rider_id=rider_id)
    delivering = list(orders.filter(status=OrderStatus.DELIVERING).order_by("promised_at"))
    others = orders.exclude(status=OrderStatus.DELIVERING).order_by("-update_time")
    recent = list(others[: max(0, limit - len(delivering))])
    return delivering + recent
