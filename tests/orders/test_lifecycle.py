"""The order lifecycle as services: every legal edge bumps the version by one
and records one event; every illegal edge changes nothing."""

from decimal import Decimal

import pytest

from orders import services
from orders.models import Order, OrderStatus
from tracking.models import EventKind, TrackingEvent
from xiaoxiang.errors import Conflict, InvalidInput, NotFound

pytestmark = pytest.mark.django_db


def _state(order: Order) -> tuple:
    fresh = Order.objects.get(pk=order.pk)
    return (fresh.status, fresh.stage, fresh.version, fresh.rider_id, TrackingEvent.objects.filter(order=fresh).count())


def test_create_computes_total_from_catalogue_and_records_version_1(warehouse, products, customer):
    order = services.order_create(
        customer=customer,
        items=[{"sku": "VEG-001", "quantity": 2}, {"sku": "EGG-001", "quantity": 1}, {"sku": "VEG-001", "quantity": 1}],
        delivery_address="天钥桥路 1 号",
        delivery_lat=31.2,
        delivery_lon=121.45,
    )
    order.refresh_from_db()
    assert len(order.id) == 32
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert order.total_amount == Decimal("23.87")  # 3 x 3.99 + 11.90
    assert order.version == 1
    assert order.warehouse == warehouse
    assert [(i.sku, i.quantity, i.line_total) for i in order.items.all()] == [
        ("VEG-001", 3, Decimal("11.97")),
        ("EGG-001", 1, Decimal("11.90")),
    ]
    events = list(TrackingEvent.objects.filter(order=order).values_list("version", "kind", "status"))
    assert events == [(1, "status", 1)]


def test_create_picks_the_nearest_warehouse(warehouse, other_warehouse, products, customer):
    order = services.order_create(
        customer=customer,
        items=[{"sku": "VEG-001", "quantity": 1}],
        delivery_address="x",
        delivery_lat=31.23,
        delivery_lon=121.54,
    )
    assert order.warehouse == other_warehouse


def test_create_with_unknown_sku_stores_nothing(warehouse, products, customer):
    with pytest.raises(InvalidInput) as error:
        services.order_create(
            customer=customer,
            items=[{"sku": "NOPE", "quantity": 1}],
            delivery_address="x",
            delivery_lat=31.2,
            delivery_lon=121.4,
        )
    assert error.value.extra == {"items": ["Unknown sku: NOPE"]}
    assert Order.objects.count() == 0


def test_full_happy_path_versions_strictly_increase(make_order, customer, operator, rider):
    order = make_order("completed")
    events = list(
        TrackingEvent.objects.filter(order=order).order_by("version").values_list("version", "kind", "status", "stage")
    )
    assert events == [
        (1, "status", 1, ""),
        (2, "status", 2, ""),
        (3, "stage", 2, "picking"),
        (4, "stage", 2, "picked"),
        (5, "stage", 2, "packed"),
        (6, "status", 3, ""),
        (7, "status", 4, ""),
    ]
    assert order.version == 7
    assert order.status == OrderStatus.COMPLETED
    assert order.rider == rider
    assert order.paid_at and order.dispatched_at and order.delivered_at


@pytest.mark.parametrize("status", ["pending", "paid"])
def test_cancel_from_pending_or_paid(make_order, customer, status):
    order = make_order(status)
    cancelled = services.order_cancel(order_id=order.id, actor=customer, expected_version=order.version)
    assert cancelled.status == OrderStatus.CANCELLED
    assert cancelled.version == order.version + 1


def test_staff_can_cancel(make_order, staff):
    order = make_order("paid")
    assert services.order_cancel(order_id=order.id, actor=staff).status == OrderStatus.CANCELLED
    assert TrackingEvent.objects.get(order=order, version=3).operator_type == 4


ILLEGAL = [
    # (status the order is in, action)
    ("pending", "stage"),
    ("pending", "dispatch"),
    ("paid", "pay"),
    ("paid", "dispatch"),  # not packed yet
    ("picking", "dispatch"),
    ("packed", "pay"),
    ("delivering", "pay"),
    ("delivering", "cancel"),
    ("delivering", "stage"),
    ("delivering", "dispatch"),
    ("completed", "cancel"),
    ("completed", "deliver"),
    ("completed", "pay"),
    ("completed", "stage"),
    ("cancelled", "pay"),
    ("cancelled", "cancel"),
    ("cancelled", "stage"),
    ("cancelled", "dispatch"),
]


def _act(action: str, order: Order, *, customer, operator, rider, stage: str = "picking"):
    if action == "pay":
        return services.order_pay(order_id=order.id, customer=customer)
    if action == "cancel":
        return services.order_cancel(order_id=order.id, actor=customer)
    if action == "stage":
        return services.order_stage_report(order_id=order.id, operator=operator, stage=stage)
    if action == "dispatch":
        return services.order_dispatch(order_id=order.id, operator=operator, rider_username=rider.username)
    if action == "deliver":
        return services.order_mark_delivered(order_id=order.id, rider=rider)
    raise AssertionError(action)


@pytest.mark.parametrize(("status", "action"), ILLEGAL)
def test_illegal_transition_is_a_conflict_and_changes_nothing(make_order, customer, operator, rider, status, action):
    order = make_order(status)
    before = _state(order)
    with pytest.raises(Conflict) as error:
        _act(action, order, customer=customer, operator=operator, rider=rider)
    assert error.value.version == order.version
    assert _state(order) == before


@pytest.mark.parametrize("status", ["pending", "paid", "packed"])
def test_deliver_before_dispatch_is_not_found_for_any_rider(make_order, customer, operator, rider, status):
    # No rider is assigned yet, so for riders the order does not exist.
    order = make_order(status)
    before = _state(order)
    with pytest.raises(NotFound):
        services.order_mark_delivered(order_id=order.id, rider=rider)
    assert _state(order) == before


@pytest.mark.parametrize(("current", "stage"), [("picking", "picking"), ("picked", "picking"), ("packed", "picked")])
def test_stages_only_move_forward(make_order, customer, operator, rider, current, stage):
    order = make_order(current)
    before = _state(order)
    with pytest.raises(Conflict):
        services.order_stage_report(order_id=order.id, operator=operator, stage=stage)
    assert _state(order) == before


def test_unknown_stage_is_invalid_input(make_order, operator):
    order = make_order("paid")
    before = _state(order)
    with pytest.raises(InvalidInput):
        services.order_stage_report(order_id=order.id, operator=operator, stage="teleported")
    assert _state(order) == before


@pytest.mark.parametrize("action", ["pay", "cancel", "stage", "dispatch", "deliver"])
def test_stale_expected_version_is_a_conflict_and_changes_nothing(make_order, customer, operator, rider, action):
    order = make_order(
        {"pay": "pending", "cancel": "paid", "stage": "paid", "dispatch": "packed", "deliver": "delivering"}[action]
    )
    before = _state(order)
    call = {
        "pay": lambda: services.order_pay(order_id=order.id, customer=customer, expected_version=order.version - 1),
        "cancel": lambda: services.order_cancel(order_id=order.id, actor=customer, expected_version=order.version - 1),
        "stage": lambda: services.order_stage_report(
            order_id=order.id, operator=operator, stage="picking", expected_version=order.version + 5
        ),
        "dispatch": lambda: services.order_dispatch(order_id=order.id, operator=operator, expected_version=1),
        "deliver": lambda: services.order_mark_delivered(order_id=order.id, rider=rider, expected_version=0),
    }[action]
    with pytest.raises(Conflict) as error:
        call()
    assert error.value.version == order.version
    assert _state(order) == before


def test_matching_expected_version_succeeds(make_order, customer):
    order = make_order("pending")
    assert services.order_pay(order_id=order.id, customer=customer, expected_version=1).version == 2


def test_someone_elses_order_is_not_found_and_unchanged(
    make_order, other_customer, other_operator, other_rider, groups
):
    pending = make_order("pending")
    packed = make_order("packed")
    delivering = make_order("delivering")
    cases = [
        (pending, lambda: services.order_pay(order_id=pending.id, customer=other_customer)),
        (pending, lambda: services.order_cancel(order_id=pending.id, actor=other_customer, expected_version=99)),
        (packed, lambda: services.order_dispatch(order_id=packed.id, operator=other_operator)),
        (packed, lambda: services.order_stage_report(order_id=packed.id, operator=other_operator, stage="picked")),
        (delivering, lambda: services.order_mark_delivered(order_id=delivering.id, rider=other_rider)),
    ]
    for order, call in cases:
        before = _state(order)
        with pytest.raises(NotFound):
            call()
        assert _state(order) == before


def test_missing_order_is_not_found(db, customer):
    with pytest.raises(NotFound):
        services.order_pay(order_id="0" * 32, customer=customer)


def test_dispatch_without_rider_picks_nearest_available(make_order, operator, rider, other_rider):
    order = make_order("packed")
    dispatched = services.order_dispatch(order_id=order.id, operator=operator)
    assert dispatched.rider == rider  # rita waits at the warehouse, ravi is 20 km away
    event = TrackingEvent.objects.get(order=order, version=dispatched.version)
    assert (event.kind, event.status, event.data) == (EventKind.STATUS, 3, {"rider": "rita"})


def test_dispatch_skips_offline_and_full_riders(make_order, operator, rider, other_rider, settings):
    rider.rider_profile.online = False
    rider.rider_profile.save()
    order = make_order("packed")
    assert services.order_dispatch(order_id=order.id, operator=operator).rider == other_rider
    settings.RIDER_MAX_ACTIVE_ORDERS = 1
    second = make_order("packed")
    before = _state(second)
    with pytest.raises(Conflict, match="No rider"):
        services.order_dispatch(order_id=second.id, operator=operator)
    assert _state(second) == before


def test_dispatch_to_unknown_rider_is_invalid(make_order, operator, customer):
    order = make_order("packed")
    before = _state(order)
    for name in ("nobody", customer.username):
        with pytest.raises(InvalidInput):
            services.order_dispatch(order_id=order.id, operator=operator, rider_username=name)
    assert _state(order) == before
