"""Notifications: created by the lifecycle, e-mailed when important, read over REST, pushed over WS."""

import pytest
from channels.db import database_sync_to_async
from django.core import mail
from rest_framework.test import APIClient

from notifications.models import Notification
from notifications.services import notification_send
from orders import services
from tests.realtime.conftest import closed_with, open_with_session, open_with_token, receive, run, socket


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _kinds(user) -> list[tuple[str, str | None]]:
    return list(Notification.objects.filter(user=user).order_by("id").values_list("kind", "order_id"))


@pytest.mark.django_db
def test_lifecycle_notifies_the_customer_and_the_rider(make_order, customer, rider, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        order = make_order("completed")
    assert _kinds(customer) == [
        ("order.paid", order.id),
        ("order.picking", order.id),
        ("order.dispatched", order.id),
        ("order.delivered", order.id),
    ]
    assert _kinds(rider) == [("order.assigned", order.id)]
    assert [(m.subject, m.to) for m in mail.outbox] == [
        ("骑手已出发", ["alice@example.com"]),
        ("订单已送达", ["alice@example.com"]),
    ]
    dispatched = Notification.objects.get(user=customer, kind="order.dispatched")
    assert dispatched.body == f"订单 {order.id} 已交给骑手 骑手rita，正在配送中。"


@pytest.mark.django_db
def test_cancel_notifies_and_emails(make_order, customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        order = make_order("cancelled")
    assert _kinds(customer) == [("order.cancelled", order.id)]
    assert [m.subject for m in mail.outbox] == ["订单已取消"]


@pytest.mark.django_db
def test_refused_transition_notifies_nobody(make_order, customer, django_capture_on_commit_callbacks):
    order = make_order("cancelled")
    before = Notification.objects.count()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(services.Conflict):
        services.order_pay(order_id=order.id, customer=customer)
    assert Notification.objects.count() == before
    assert mail.outbox == []


@pytest.mark.django_db
def test_list_shows_only_my_notifications_newest_first(make_order, customer, other_customer):
    order = make_order("paid")
    notification_send(user=other_customer, kind="x", title="not yours")
    response = api(customer).get("/api/notifications/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert [(n["kind"], n["order"], n["read"]) for n in body["results"]] == [("order.paid", order.id, False)]


@pytest.mark.django_db
def test_list_is_paginated(customer):
    for index in range(25):
        notification_send(user=customer, kind="x", title=f"n{index}")
    page = api(customer).get("/api/notifications/").json()
    assert (page["count"], len(page["results"]), page["results"][0]["title"]) == (25, 20, "n24")
    assert len(api(customer).get("/api/notifications/?page=2").json()["results"]) == 5


@pytest.mark.django_db
def test_mark_read(customer):
    notification = notification_send(user=customer, kind="x", title="hello")
    response = api(customer).post(f"/api/notifications/{notification.id}/read/")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["read"]) == (notification.id, True)
    notification.refresh_from_db()
    assert notification.is_read is True
    assert api(customer).post(f"/api/notifications/{notification.id}/read/").status_code == 200


@pytest.mark.django_db
def test_foreign_or_unknown_notification_is_404_and_unchanged(customer, other_customer):
    notification = notification_send(user=other_customer, kind="x", title="theirs")
    for notification_id in (notification.id, 999999):
        response = api(customer).post(f"/api/notifications/{notification_id}/read/")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}
    notification.refresh_from_db()
    assert notification.is_read is False


@pytest.mark.django_db
def test_anonymous_is_401(customer):
    assert APIClient().get("/api/notifications/").status_code == 401
    assert APIClient().post("/api/notifications/1/read/").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_notifications_are_pushed_live_on_the_socket(make_order, customer, rider, operator):
    order = make_order("packed")

    async def body():
        mine = await open_with_session("/ws/notifications/", customer)
        assert await receive(mine) == {"type": "notifications.unread", "count": 2}  # paid, picking
        riders = await open_with_token("/ws/notifications/", rider)
        assert await receive(riders) == {"type": "notifications.unread", "count": 0}
        await database_sync_to_async(services.order_dispatch)(
            order_id=order.id, operator=operator, rider_username="rita"
        )
        pushed = await receive(mine)
        assert pushed["type"] == "notification.created"
        assert (pushed["notification"]["kind"], pushed["notification"]["order"]) == ("order.dispatched", order.id)
        assigned = await receive(riders)
        assert (assigned["notification"]["kind"], assigned["notification"]["order"]) == ("order.assigned", order.id)
        assert await mine.receive_nothing(0.3)
        await mine.disconnect()
        await riders.disconnect()

    run(body)


@pytest.mark.django_db(transaction=True)
def test_notification_socket_needs_authentication(settings):
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.3

    async def body():
        ws = socket("/ws/notifications/")
        await ws.connect()
        assert await closed_with(ws) == 4401

    run(body)
