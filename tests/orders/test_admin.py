"""The admin is useful to an operator and never writes around the services."""

import pytest
from django.urls import reverse

from orders.models import Order, OrderStatus
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    return client


@pytest.mark.parametrize(
    "model",
    ["orders/order", "orders/product", "orders/warehouse", "orders/warehouseoperator", "tracking/trackingevent",
     "tracking/rider", "tracking/alert", "tracking/etafit", "notifications/notification"],
)  # fmt: skip
def test_every_model_has_a_working_changelist(staff_client, make_order, model):
    make_order("delivering")
    response = staff_client.get(f"/admin/{model}/")
    assert response.status_code == 200


def test_order_page_shows_timeline_and_search_finds_by_customer(staff_client, make_order, customer):
    order = make_order("packed")
    page = staff_client.get(reverse("admin:orders_order_change", args=[order.id]))
    assert page.status_code == 200
    assert "拣货中" in page.content.decode() and "已打包" in page.content.decode()
    found = staff_client.get("/admin/orders/order/", {"q": customer.username})
    assert order.id in found.content.decode()
    assert staff_client.get("/admin/orders/order/", {"q": order.id}).context["cl"].result_count == 1


def test_cancel_action_goes_through_the_service(staff_client, make_order):
    paid = make_order("paid")
    delivering = make_order("delivering")
    response = staff_client.post(
        "/admin/orders/order/",
        {"action": "cancel_orders", "_selected_action": [paid.id, delivering.id]},
        follow=True,
    )
    assert response.status_code == 200
    paid.refresh_from_db()
    delivering.refresh_from_db()
    assert (paid.status, paid.version) == (OrderStatus.CANCELLED, 3)
    assert TrackingEvent.objects.get(order=paid, version=3).status == OrderStatus.CANCELLED
    assert (delivering.status, delivering.version) == (OrderStatus.DELIVERING, 6)  # refused, unchanged
    assert "Cannot cancel" in response.content.decode()


def test_order_fields_are_read_only(staff_client, make_order):
    order = make_order("paid")
    staff_client.post(reverse("admin:orders_order_change", args=[order.id]), {"status": 4, "version": 99})
    fresh = Order.objects.get(pk=order.id)
    assert (fresh.status, fresh.version) == (OrderStatus.PAID, 2)
