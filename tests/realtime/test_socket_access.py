"""Who keeps a socket: a logout closes its session's sockets; a repair re-checks that the user still sees the order."""

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.test import Client
from django.utils import timezone

from orders.models import Order
from tests.realtime.conftest import (
    SAME_SITE,
    closed_with,
    nothing_more,
    open_with_token,
    receive,
    run,
    socket,
)
from tracking import publish
from tracking.events import tracking_event_record
from tracking.models import EventKind

pytestmark = pytest.mark.django_db(transaction=True)


def _session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def _open_with(browser: Client, path: str):
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    ws = socket(path, headers=[SAME_SITE, (b"cookie", cookie)])
    connected, _ = await ws.connect()
    assert connected
    return ws


def test_logging_out_closes_every_socket_of_that_session_and_no_other(make_order, customer):
    order = make_order("paid")

    async def body():
        laptop = await database_sync_to_async(_session)(customer)
        phone = await database_sync_to_async(_session)(customer)
        order_ws = await _open_with(laptop, f"/ws/orders/{order.id}/")
        bell_ws = await _open_with(laptop, "/ws/notifications/")
        phone_ws = await _open_with(phone, f"/ws/orders/{order.id}/")
        app_ws = await open_with_token(f"/ws/orders/{order.id}/", customer)
        for ws in (order_ws, bell_ws, phone_ws, app_ws):
            assert (await receive(ws))["type"] in {"snapshot", "notifications.unread"}

        logged_out = await database_sync_to_async(laptop.post)("/accounts/logout/")

        assert logged_out.status_code == 302
        assert await closed_with(order_ws) == 4401
        assert await closed_with(bell_ws) == 4401
        # The other session and the token client keep their streams.
        assert await nothing_more(phone_ws)
        assert await nothing_more(app_ws)
        for ws in (phone_ws, app_ws):
            await ws.disconnect()

    run(body)


def _take_rider_off(order: Order, new_rider) -> None:
    """No service reassigns a rider yet: this is the change one would make, without an event (nothing publishes)."""
    Order.objects.filter(pk=order.pk).update(rider=new_rider)


def _record_eta(order_id: str) -> None:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        order.eta = timezone.now() + dt.timedelta(minutes=12)
        tracking_event_record(order=order, kind=EventKind.ETA, changed_fields=["eta"])


def test_a_rider_taken_off_an_order_loses_its_stream_at_the_next_repair(
    make_order, rider, other_rider, staff, settings, monkeypatch
):
    settings.WS_CATCH_UP_SECONDS = 0.3
    settings.WS_HEARTBEAT_SECONDS = 60
    order = make_order("delivering")

    async def body():
        rider_ws = await open_with_token(f"/ws/orders/{order.id}/", rider)
        staff_ws = await open_with_token(f"/ws/orders/{order.id}/", staff)
        assert (await receive(rider_ws))["type"] == "snapshot"
        version = (await receive(staff_ws))["version"]
        await database_sync_to_async(_take_rider_off)(order, other_rider)
        monkeypatch.setattr(publish, "group_send", lambda group, message: None)  # the layer loses the ETA event

        await database_sync_to_async(_record_eta)(order.id)

        # The catch-up repairs both sockets from the database; only staff may still see the order.
        assert await closed_with(rider_ws) == 4404
        frame = await receive(staff_ws)
        assert (frame["type"], frame["version"]) == ("event", version + 1)
        await staff_ws.disconnect()

    run(body)


def _reassign(order_id: str, new_rider) -> None:
    """What a reassignment service would record: the rider changes in one versioned event."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        order.rider = new_rider
        tracking_event_record(order=order, kind=EventKind.STATUS, changed_fields=["rider"])


def test_an_event_that_changes_the_rider_reaches_only_who_still_sees_the_order(
    make_order, customer, rider, other_rider, staff
):
    order = make_order("delivering")

    async def body():
        rider_ws = await open_with_token(f"/ws/orders/{order.id}/", rider)
        customer_ws = await open_with_token(f"/ws/orders/{order.id}/", customer)
        staff_ws = await open_with_token(f"/ws/orders/{order.id}/", staff)
        for ws in (rider_ws, customer_ws, staff_ws):
            version = (await receive(ws))["version"]

        await database_sync_to_async(_reassign)(order.id, other_rider)

        assert await closed_with(rider_ws) == 4404
        staff_frame = await receive(staff_ws)
        customer_frame = await receive(customer_ws)
        assert (staff_frame["type"], staff_frame["version"]) == ("event", version + 1)
        assert staff_frame["changes"]["rider"]["username"] == other_rider.username
        assert (customer_frame["type"], customer_frame["version"]) == ("event", version + 1)
        assert await nothing_more(staff_ws)
        for ws in (customer_ws, staff_ws):
            await ws.disconnect()

    run(body)
