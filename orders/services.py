"""The order lifecycle. Each write locks the order, checks the transition,
bumps the version by exactly one and records the tracking event, atomically;
then says, in order, what follows it: the notifications, and the ETA and
alert jobs (both sent only once the transaction commits)."""

import datetime as dt
from collections import OrderedDict
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from notifications.services import order_notify, order_notify_warehouse
from orders.models import STAGE_ORDER, Order, OrderItem, OrderStatus, Product, Stage, Warehouse
from tracking.events import tracking_event_record
from tracking.jobs import order_jobs_after_commit
from tracking.models import EventKind, OperatorType
from tracking.selectors import rider_nearest_available, riders_available
from xiaoxiang.errors import Conflict, InvalidInput, NotFound
from xiaoxiang.geo import haversine_m

MAX_QUANTITY = 99


def _operator_type(user: AbstractBaseUser) -> int:
    if user.is_staff:
        return OperatorType.STAFF
    return OperatorType.CUSTOMER


def _locked_order(order_id: str) -> Order:
    try:
        return Order.objects.select_for_update().get(pk=order_id)
    except Order.DoesNotExist:
        raise NotFound() from None


def _check_version(order: Order, expected_version: int | None) -> None:
    """Checked after visibility, so a stranger never learns a version."""
    if expected_version is not None and expected_version != order.version:
        raise Conflict(
            f"Stale expected_version {expected_version}: the order is at version {order.version}.",
            version=order.version,
        )


def _require_status(order: Order, allowed: set[int], action: str) -> None:
    if order.status not in allowed:
        raise Conflict(
            f"Cannot {action} an order that is {order.get_status_display()} ({order.status_name}).",
            version=order.version,
        )


def warehouse_nearest(*, lat: float, lon: float) -> Warehouse:
    warehouses = list(Warehouse.objects.filter(active=True))
    if not warehouses:
        raise InvalidInput("No warehouse is open.", delivery_lat=["No warehouse serves this location."])
    return min(warehouses, key=lambda w: haversine_m(lat, lon, float(w.latitude), float(w.longitude)))


@transaction.atomic
def order_create(
    *,
    customer: AbstractBaseUser,
    items: list[dict],
    delivery_address: str,
    delivery_lat: float,
    delivery_lon: float,
) -> Order:
    """Create a pending order; the total comes from the catalogue, never from the client."""
    quantities: OrderedDict[str, int] = OrderedDict()
    for item in items:
        quantities[item["sku"]] = quantities.get(item["sku"], 0) + int(item["quantity"])
    products = {p.sku: p for p in Product.objects.filter(sku__in=quantities, active=True)}
    unknown = [sku for sku in quantities if sku not in products]
    if unknown:
        raise InvalidInput("Unknown sku.", items=[f"Unknown sku: {sku}" for sku in unknown])
    too_many = [sku for sku, quantity in quantities.items() if quantity > MAX_QUANTITY]
    if too_many:
        raise InvalidInput("Quantity too large.", items=[f"At most {MAX_QUANTITY} of {sku}" for sku in too_many])

    now = timezone.now()
    warehouse = warehouse_nearest(lat=delivery_lat, lon=delivery_lon)
    lines = [
        OrderItem(
            product=products[sku],
            sku=sku,
            name=products[sku].name,
            unit_price=products[sku].price,
            quantity=quantity,
            line_total=products[sku].price * quantity,
        )
        for sku, quantity in quantities.items()
    ]
    order = Order.objects.create(
        user=customer,
        status=OrderStatus.PENDING_PAYMENT,
        total_amount=sum((line.line_total for line in lines), Decimal("0.00")),
        warehouse=warehouse,
        delivery_address=delivery_address,
        delivery_lat=delivery_lat,
        delivery_lon=delivery_lon,
        promised_at=now + dt.timedelta(minutes=settings.DELIVERY_PROMISE_MINUTES),
        version=0,
    )
    for line in lines:
        line.order = order
    OrderItem.objects.bulk_create(lines)
    tracking_event_record(order=order, kind=EventKind.STATUS, operator=customer, operator_type=OperatorType.CUSTOMER)
    return order


@transaction.atomic
def order_pay(*, order_id: str, customer: AbstractBaseUser, expected_version: int | None = None) -> Order:
    """1 → 2 (payment is simulated)."""
    order = _locked_order(order_id)
    if order.user_id != customer.pk:
        raise NotFound()
    _check_version(order, expected_version)
    _require_status(order, {OrderStatus.PENDING_PAYMENT}, "pay")
    order.status = OrderStatus.PAID
    order.paid_at = timezone.now()
    # The promise counts from payment: that is when the warehouse starts.
    order.promised_at = order.paid_at + dt.timedelta(minutes=settings.DELIVERY_PROMISE_MINUTES)
    tracking_event_record(
        order=order,
        kind=EventKind.STATUS,
        changed_fields=["status", "paid_at", "promised_at"],
        operator=customer,
        operator_type=OperatorType.CUSTOMER,
    )
    order_notify(order=order, kind="order.paid")
    order_notify_warehouse(order=order)
    order_jobs_after_commit([order.pk])
    return order


@transaction.atomic
def order_cancel(*, order_id: str, actor: AbstractBaseUser, expected_version: int | None = None) -> Order:
    """1 or 2 → 5, by the owner or staff."""
    order = _locked_order(order_id)
    if order.user_id != actor.pk and not actor.is_staff:
        raise NotFound()
    _check_version(order, expected_version)
    _require_status(order, {OrderStatus.PENDING_PAYMENT, OrderStatus.PAID}, "cancel")
    order.status = OrderStatus.CANCELLED
    order.cancelled_at = timezone.now()
    tracking_event_record(
        order=order,
        kind=EventKind.STATUS,
        changed_fields=["status", "cancelled_at"],
        operator=actor,
        operator_type=_operator_type(actor),
    )
    order_notify(order=order, kind="order.cancelled")
    # Resolves the order's open alerts.
    order_jobs_after_commit([order.pk])
    return order


def _check_warehouse_actor(order: Order, operator: AbstractBaseUser) -> None:
    if operator.is_staff:
        return
    operator_warehouse = getattr(getattr(operator, "warehouse_operator", None), "warehouse_id", None)
    if operator_warehouse != order.warehouse_id:
        raise NotFound()


@transaction.atomic
def order_stage_report(
    *, order_id: str, operator: AbstractBaseUser, stage: str, expected_version: int | None = None
) -> Order:
    """Record a warehouse stage of a paid order; stages only move forward."""
    if stage not in Stage.values:
        raise InvalidInput("Unknown stage.", stage=[f"Must be one of {', '.join(Stage.values)}."])
    order = _locked_order(order_id)
    _check_warehouse_actor(order, operator)
    _check_version(order, expected_version)
    _require_status(order, {OrderStatus.PAID}, f"report stage {stage} on")
    current = STAGE_ORDER.index(order.stage) if order.stage else -1
    if STAGE_ORDER.index(Stage(stage)) <= current:
        raise Conflict(f"Stage {stage} cannot follow {order.stage}.", version=order.version)
    order.stage = stage
    tracking_event_record(
        order=order,
        kind=EventKind.STAGE,
        changed_fields=["stage"],
        stage=stage,
        operator=operator,
        operator_type=OperatorType.WAREHOUSE,
    )
    if stage == Stage.PICKING:
        order_notify(order=order, kind="order.picking")
    order_jobs_after_commit([order.pk])
    return order


@transaction.atomic
def order_dispatch(
    *,
    order_id: str,
    operator: AbstractBaseUser,
    rider_username: str | None = None,
    expected_version: int | None = None,
) -> Order:
    """2 → 3: hand a packed order to a named rider, or to the nearest available one."""
    order = _locked_order(order_id)
    _check_warehouse_actor(order, operator)
    _check_version(order, expected_version)
    _require_status(order, {OrderStatus.PAID}, "dispatch")
    if order.stage != Stage.PACKED:
        raise Conflict("Only a packed order can be dispatched.", version=order.version)
    if rider_username:
        rider_user = get_user_model().objects.filter(username=rider_username).first()
        if rider_user is None or not riders_available().filter(user=rider_user).exists():
            raise InvalidInput("Rider not available.", rider=[f"No available rider named {rider_username!r}."])
    else:
        rider = rider_nearest_available(lat=float(order.warehouse.latitude), lon=float(order.warehouse.longitude))
        if rider is None:
            raise Conflict("No rider is available right now.", version=order.version)
        rider_user = rider.user
    order.status = OrderStatus.DELIVERING
    order.rider = rider_user
    order.dispatched_at = timezone.now()
    tracking_event_record(
        order=order,
        kind=EventKind.STATUS,
        changed_fields=["status", "rider", "dispatched_at"],
        operator=operator,
        operator_type=OperatorType.WAREHOUSE,
        latitude=float(order.warehouse.latitude),
        longitude=float(order.warehouse.longitude),
        data={"rider": rider_user.get_username()},
    )
    order_notify(order=order, kind="order.dispatched")
    order_notify(order=order, kind="order.assigned", user=rider_user)
    order_jobs_after_commit([order.pk])
    return order


@transaction.atomic
def order_mark_delivered(*, order_id: str, rider: AbstractBaseUser, expected_version: int | None = None) -> Order:
    """3 → 4, by the assigned rider."""
    order = _locked_order(order_id)
    if order.rider_id != rider.pk:
        raise NotFound()
    _check_version(order, expected_version)
    _require_status(order, {OrderStatus.DELIVERING}, "mark delivered")
    order.status = OrderStatus.COMPLETED
    order.delivered_at = timezone.now()
    tracking_event_record(
        order=order,
        kind=EventKind.STATUS,
        changed_fields=["status", "delivered_at"],
        operator=rider,
        operator_type=OperatorType.RIDER,
    )
    order_notify(order=order, kind="order.delivered")
    order_jobs_after_commit([order.pk])
    return order


def order_encryption_rotate() -> int:
    """Re-encrypt every order's encrypted columns under the newest FIELD_ENCRYPTION_KEYS key.

    Not a change of the order: no version bump, no event.
    """
    rotated = 0
    for order in Order.objects.only("id", "delivery_address", "delivery_lat", "delivery_lon").iterator(chunk_size=500):
        # Reading decrypts with any key; writing encrypts with the first.
        Order.objects.filter(pk=order.pk).update(
            delivery_address=order.delivery_address, delivery_lat=order.delivery_lat, delivery_lon=order.delivery_lon
        )
        rotated += 1
    return rotated


@transaction.atomic
def user_register(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """Create a customer account; Django's password validators apply."""
    user_model = get_user_model()
    try:
        validate_password(password, user=user_model(username=username, email=email))
    except ValidationError as exc:
        raise InvalidInput("This password is not allowed.", password=list(exc.messages)) from None
    try:
        # The unique username is the claim: two racing sign-ups cannot both win.
        with transaction.atomic():
            user = user_model.objects.create_user(username=username, email=email, password=password)
    except IntegrityError:
        raise InvalidInput("Username taken.", username=["A user with that username already exists."]) from None
    user.groups.add(Group.objects.get_or_create(name="customer")[0])
    return user


def auth_logout(*, user: AbstractBaseUser, refresh: str) -> None:
    """Blacklist one of the user's refresh tokens, so it can neither refresh nor rotate again."""
    try:
        token = RefreshToken(refresh)
    except TokenError as exc:
        raise InvalidInput("Invalid refresh token.", refresh=[str(exc)]) from None
    if str(token.get(jwt_settings.USER_ID_CLAIM)) != str(user.pk):
        raise InvalidInput("Invalid refresh token.", refresh=["This refresh token belongs to another user."])
    token.blacklist()
