"""Reads of orders: who may see which order, the catalogue and the order lists."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from orders.models import Order, OrderStatus, Product
from xiaoxiang.errors import NotFound
from xiaoxiang.roles import ROLE_CUSTOMER, ROLE_RIDER, ROLE_STAFF, ROLE_WAREHOUSE, user_role


def _visibility_lookups(user: AbstractBaseUser) -> dict[str, Any] | None:
    """Who may see an order, as the field values it must have: {} for staff (all), None for no one."""
    role = user_role(user)
    if role == ROLE_STAFF:
        return {}
    if role == ROLE_WAREHOUSE:
        return {"warehouse_id": getattr(getattr(user, "warehouse_operator", None), "warehouse_id", None)}
    if role == ROLE_RIDER:
        return {"rider_id": user.pk}
    if role == ROLE_CUSTOMER:
        return {"user_id": user.pk}
    return None


def orders_visible_to(user: AbstractBaseUser, *, joined: bool = True) -> QuerySet[Order]:
    """Owner, assigned rider, the order's warehouse, or staff.

    `joined` fetches what the snapshot and the pages show with it (warehouse,
    rider, customer); without, only the rule is applied.
    """
    lookups = _visibility_lookups(user)
    orders = (
        Order.objects.select_related("warehouse", "rider", "rider__rider_profile", "user") if joined else Order.objects
    )
    return orders.none() if lookups is None else orders.filter(**lookups)


def order_visible_to(*, user: AbstractBaseUser, order: Order) -> bool:
    """The same rule for an order already read (a socket's server-side repair shares one read per order)."""
    lookups = _visibility_lookups(user)
    return lookups is not None and all(getattr(order, field) == value for field, value in lookups.items())


def order_get_for_user(*, user: AbstractBaseUser, order_id: str) -> Order:
    """The order if the user may see it; NotFound otherwise (never a leak of its existence)."""
    order = orders_visible_to(user).filter(pk=order_id).first()
    if order is None:
        raise NotFound()
    return order


def order_access_for_user(*, user: AbstractBaseUser, order_id: str) -> Order:
    """Like order_get_for_user, but only the columns that decide visibility, role and version (no joins).

    For the socket open, which usually finds the snapshot in the cache.
    """
    order = (
        orders_visible_to(user, joined=False)
        .filter(pk=order_id)
        .only("id", "user_id", "rider_id", "warehouse_id", "status", "version")
        .first()
    )
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
