"""/ws/orders/{id}/: authentication, authorization, the stream, resync, heartbeat and limits."""

import asyncio
import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from orders import services
from orders.models import Order
from tests.realtime.conftest import (
    SAME_SITE,
    access_token,
    closed_with,
    nothing_more,
    open_with_session,
    open_with_token,
    receive,
    run,
    session_cookie,
    socket,
)
from tracking import publish
from tracking.role_views import order_for_role
from tracking.services import LocationPoint, location_points_ingest
from tracking.snapshot import STATIC_FIELDS, order_snapshot_build

pytestmark = pytest.mark.django_db(transaction=True)


def _snapshot(order_id: str, role: str) -> dict:
    order = Order.objects.get(pk=order_id)
    full = order_snapshot_build(order=order)
    return order_for_role(full, role, status=full["status"])


def _point(client_id: str, lat: float, lon: float, seconds_ago: float = 0) -> LocationPoint:
    return LocationPoint(
        client_id=client_id, lat=lat, lon=lon, recorded_at=timezone.now() - dt.timedelta(seconds=seconds_ago)
    )


def _older(order: Order) -> Order:
    """Points recorded before an order was created are refused; these tests replay the past."""
    Order.objects.filter(pk=order.pk).update(create_time=timezone.now() - dt.timedelta(hours=1))
    return order


def _ingest(rider, *points: LocationPoint):
    return location_points_ingest(rider_user=rider, points=list(enumerate(points)))


# --- authentication ----------------------------------------------------------------


def test_session_cookie_gets_the_role_filtered_snapshot(make_order, customer):
    order = make_order("delivering")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        frame = await receive(ws)
        expected = await database_sync_to_async(_snapshot)(order.id, "customer")
        assert frame == {"type": "snapshot", "version": 6, "order": expected}
        assert "alerts" not in frame["order"]
        assert frame["order"]["rider"] == {"name": "骑手rita"}
        assert await nothing_more(ws)
        await ws.disconnect()

    run(body)


def test_first_message_token_authenticates_an_app_client(make_order, staff):
    order = make_order("paid")

    async def body():
        ws = await open_with_token(f"/ws/orders/{order.id}/", staff)
        frame = await receive(ws)
        assert frame["type"] == "snapshot"
        assert frame["version"] == 2
        assert frame["order"] == await database_sync_to_async(_snapshot)(order.id, "staff")
        assert frame["order"]["alerts"] == []
        await ws.disconnect()

    run(body)


def test_no_origin_never_authenticates_by_cookie(make_order, customer, settings):
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.3
    order = make_order("paid")

    async def body():
        cookie = await database_sync_to_async(session_cookie)(customer)
        ws = socket(f"/ws/orders/{order.id}/", headers=[(b"cookie", cookie)])
        connected, _ = await ws.connect()
        assert connected
        assert await closed_with(ws) == 4401

    run(body)


def test_origin_of_another_site_is_refused_at_the_handshake(make_order, customer):
    order = make_order("paid")

    async def body():
        cookie = await database_sync_to_async(session_cookie)(customer)
        ws = socket(f"/ws/orders/{order.id}/", headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie)])
        connected, _ = await ws.connect()
        assert not connected

    run(body)


def test_no_auth_within_the_timeout_closes_4401(make_order, settings):
    settings.WS_AUTH_TIMEOUT_SECONDS = 0.3
    order = make_order("paid")

    async def body():
        ws = socket(f"/ws/orders/{order.id}/", headers=[SAME_SITE])
        connected, _ = await ws.connect()
        assert connected
        assert await closed_with(ws) == 4401

    run(body)


@pytest.mark.parametrize(
    "first_message",
    [
        {"type": "auth", "token": "not-a-jwt"},
        {"type": "auth"},
        {"type": "resync", "since_version": 0},
    ],
)
def test_bad_token_or_other_first_message_closes_4401(make_order, first_message):
    order = make_order("paid")

    async def body():
        ws = socket(f"/ws/orders/{order.id}/")
        await ws.connect()
        await ws.send_json_to(first_message)
        assert await closed_with(ws) == 4401

    run(body)


def test_refresh_token_is_not_an_access_token(make_order, customer):
    from rest_framework_simplejwt.tokens import RefreshToken

    order = make_order("paid")

    async def body():
        refresh = await database_sync_to_async(lambda: str(RefreshToken.for_user(customer)))()
        ws = socket(f"/ws/orders/{order.id}/")
        await ws.connect()
        await ws.send_json_to({"type": "auth", "token": refresh})
        assert await closed_with(ws) == 4401

    run(body)


def test_socket_is_closed_when_its_token_expires(make_order, customer):
    order = make_order("paid")

    async def body():
        ws = await open_with_token(f"/ws/orders/{order.id}/", customer, lifetime=dt.timedelta(seconds=1))
        assert (await receive(ws))["type"] == "snapshot"
        assert await closed_with(ws, timeout=4) == 4401

    run(body)


def test_a_fresh_token_extends_the_socket(make_order, customer):
    order = make_order("paid")

    async def body():
        ws = await open_with_token(f"/ws/orders/{order.id}/", customer, lifetime=dt.timedelta(seconds=1))
        assert (await receive(ws))["type"] == "snapshot"
        fresh = await database_sync_to_async(access_token)(customer)
        await ws.send_json_to({"type": "auth", "token": fresh})
        assert await nothing_more(ws, timeout=1.5)
        await ws.disconnect()

    run(body)


# --- authorization -----------------------------------------------------------------


def test_outsider_is_closed_4404_like_the_rest_detail(make_order, other_customer, other_operator, other_rider):
    order = make_order("delivering")

    async def body():
        for outsider in (other_customer, other_operator, other_rider):
            ws = await open_with_token(f"/ws/orders/{order.id}/", outsider)
            assert await closed_with(ws) == 4404

    run(body)


@pytest.mark.parametrize("order_id", ["0" * 32, "no such order!"])
def test_unknown_order_is_closed_4404(customer, order_id):
    async def body():
        ws = await open_with_token(f"/ws/orders/{order_id}/", customer)
        assert await closed_with(ws) == 4404

    run(body)


def test_assigned_rider_and_warehouse_see_everything_but_alerts(make_order, rider, operator):
    order = make_order("delivering")

    async def body():
        for member in (rider, operator):
            ws = await open_with_token(f"/ws/orders/{order.id}/", member)
            frame = await receive(ws)
            assert frame["order"]["rider"]["username"] == "rita"
            assert "alerts" not in frame["order"]
            await ws.disconnect()

    run(body)


# --- the stream -------------------------------------------------------------------------


def test_each_committed_change_is_an_event_with_only_the_changed_fields(make_order, customer, operator):
    order = make_order("pending")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        assert (await receive(ws))["version"] == 1
        await database_sync_to_async(services.order_pay)(order_id=order.id, customer=customer)
        paid = await receive(ws)
        after = await database_sync_to_async(_snapshot)(order.id, "customer")
        assert paid["type"] == "event"
        assert paid["version"] == 2
        assert (paid["event"]["kind"], paid["event"]["status"], paid["event"]["stage"]) == ("status", 2, None)
        assert set(paid["changes"]) == {
            "status",
            "status_name",
            "status_display",
            "version",
            "update_time",
            "promised_at",
            "timeline",
        }
        assert {key: after[key] for key in paid["changes"]} == paid["changes"]

        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picking")
        picking = await receive(ws)
        assert picking["version"] == 3
        assert picking["event"]["stage"] == "picking"
        assert set(picking["changes"]) == {"stage", "version", "update_time", "timeline"}
        assert picking["changes"]["timeline"][-1]["stage"] == "picking"
        assert await nothing_more(ws)
        await ws.disconnect()

    run(body)


def test_customer_sees_a_coarse_position_and_the_rider_name_only(make_order, customer, rider):
    order = make_order("packed")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        assert (await receive(ws))["version"] == 5
        await database_sync_to_async(services.order_dispatch)(
            order_id=order.id, operator=await database_sync_to_async(lambda: order.warehouse.operators.first().user)()
        )
        dispatched = await receive(ws)
        assert dispatched["version"] == 6
        assert dispatched["changes"]["rider"] == {"name": "骑手rita"}
        assert dispatched["event"]["data"] == {}  # no rider username for customers

        await database_sync_to_async(_ingest)(rider, _point("p1", 31.1912345, 121.4398765))
        moved = await receive(ws)
        assert moved["version"] == 7
        assert moved["event"]["kind"] == "location"
        assert (moved["event"]["lat"], moved["event"]["lon"]) == (31.1912, 121.4399)
        position = moved["changes"]["rider_position"]
        assert (position["lat"], position["lon"]) == (31.1912, 121.4399)
        assert set(moved["changes"]) == {"rider_position", "version", "update_time"}
        await ws.disconnect()

    run(body)


def test_staff_sees_full_precision(make_order, staff, rider):
    order = make_order("delivering")

    async def body():
        ws = await open_with_token(f"/ws/orders/{order.id}/", staff)
        await receive(ws)
        await database_sync_to_async(_ingest)(rider, _point("p1", 31.1912346, 121.4398766))
        moved = await receive(ws)
        assert (moved["event"]["lat"], moved["event"]["lon"]) == (31.191235, 121.439877)
        assert moved["changes"]["rider_position"]["lat"] == 31.191235
        await ws.disconnect()

    run(body)


def test_offline_batch_fills_history_without_moving_the_position_back(make_order, staff, rider):
    order = _older(make_order("delivering"))

    async def body():
        ws = await open_with_token(f"/ws/orders/{order.id}/", staff)
        await receive(ws)
        await database_sync_to_async(_ingest)(rider, _point("live", 31.19, 121.44, seconds_ago=5))
        live = await receive(ws)
        assert live["changes"]["rider_position"]["lat"] == 31.19
        late = await database_sync_to_async(_ingest)(
            rider, _point("old-1", 31.10, 121.40, seconds_ago=60), _point("old-2", 31.11, 121.41, seconds_ago=50)
        )
        assert late.accepted == 2
        first, second = await receive(ws), await receive(ws)
        assert [first["version"], second["version"]] == [8, 9]
        assert [first["event"]["lat"], second["event"]["lat"]] == [31.10, 31.11]
        assert "rider_position" not in first["changes"]
        assert "rider_position" not in second["changes"]
        await ws.disconnect()

    run(body)


def test_batch_of_points_is_one_event_per_version_in_order(make_order, customer, rider):
    order = _older(make_order("delivering"))

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        # 111 m each 5 s: a plausible ride (tracking/quality.py flags impossible speeds).
        points = [_point(f"b{i}", 31.19 + i / 1000, 121.44, seconds_ago=30 - 5 * i) for i in range(5)]
        await database_sync_to_async(_ingest)(rider, *points)
        frames = [await receive(ws) for _ in range(5)]
        assert [frame["version"] for frame in frames] == [7, 8, 9, 10, 11]
        assert [frame["changes"]["rider_position"]["lat"] for frame in frames] == [
            31.19,
            31.191,
            31.192,
            31.193,
            31.194,
        ]
        await ws.disconnect()

    run(body)


# --- resync -------------------------------------------------------------------------------


def test_resync_answers_the_missed_events_in_order(make_order, customer):
    order = make_order("packed")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        assert (await receive(ws))["version"] == 5
        await ws.send_json_to({"type": "resync", "since_version": 2})
        frames = [await receive(ws) for _ in range(3)]
        assert [(f["type"], f["version"], f["event"]["stage"]) for f in frames] == [
            ("event", 3, "picking"),
            ("event", 4, "picked"),
            ("event", 5, "packed"),
        ]
        assert frames[0]["changes"] == {"version": 3}
        current = await database_sync_to_async(_snapshot)(order.id, "customer")
        assert frames[-1]["changes"] == {k: v for k, v in current.items() if k not in STATIC_FIELDS}
        assert await nothing_more(ws)
        await ws.disconnect()

    run(body)


def test_resync_after_too_many_missed_answers_a_snapshot(make_order, customer, settings):
    settings.WS_RESYNC_MAX_EVENTS = 2
    order = make_order("packed")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        await ws.send_json_to({"type": "resync", "since_version": 1})
        frame = await receive(ws)
        assert frame == {
            "type": "snapshot",
            "version": 5,
            "order": await database_sync_to_async(_snapshot)(order.id, "customer"),
        }
        await ws.disconnect()

    run(body)


def test_resync_when_current_answers_a_heartbeat(make_order, customer):
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        await ws.send_json_to({"type": "resync", "since_version": 2})
        frame = await receive(ws)
        assert (frame["type"], frame["version"]) == ("heartbeat", 2)
        await ws.disconnect()

    run(body)


@pytest.mark.parametrize("since", [-1, "3", None, True, 1.5])
def test_invalid_resync_is_an_error_frame_and_keeps_the_socket(make_order, customer, since):
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        await ws.send_json_to({"type": "resync", "since_version": since})
        assert await receive(ws) == {"type": "error", "detail": "since_version must be a non-negative integer."}
        await ws.send_json_to({"type": "resync", "since_version": 0})
        assert (await receive(ws))["type"] == "event"
        await ws.disconnect()

    run(body)


def test_a_dropped_publish_is_recovered_from_the_database_in_version_order(make_order, customer, operator, monkeypatch):
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        assert (await receive(ws))["version"] == 2
        original = publish.group_send
        monkeypatch.setattr(publish, "group_send", lambda group, message: None)  # the layer drops v3
        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picking")
        monkeypatch.setattr(publish, "group_send", original)
        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picked")
        frames = [await receive(ws), await receive(ws)]
        assert [(f["type"], f["version"]) for f in frames] == [("event", 3), ("event", 4)]
        assert frames[-1]["changes"]["stage"] == "picked"
        assert await nothing_more(ws)
        await ws.disconnect()

    run(body)


# --- heartbeat -----------------------------------------------------------------------------


def test_heartbeat_carries_the_version(make_order, customer, settings):
    settings.WS_HEARTBEAT_SECONDS = 0.3
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        beat = await receive(ws, timeout=2)
        assert beat["type"] == "heartbeat"
        assert beat["version"] == 2
        assert dt.datetime.fromisoformat(beat["server_time"]).tzinfo is not None
        await ws.disconnect()

    run(body)


def test_heartbeat_catches_up_a_socket_that_lost_the_last_publish(
    make_order, customer, operator, settings, monkeypatch
):
    settings.WS_HEARTBEAT_SECONDS = 0.5
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        monkeypatch.setattr(publish, "group_send", lambda group, message: None)
        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picking")
        # One beat notices the order moved on; the next, still behind, repairs from the database.
        frames = [await receive(ws, timeout=2) for _ in range(3)]
        assert [(frame["type"], frame["version"]) for frame in frames] == [
            ("heartbeat", 2),
            ("event", 3),
            ("heartbeat", 3),
        ]
        assert frames[1]["event"]["stage"] == "picking"
        await ws.disconnect()

    run(body)


def test_catch_up_between_beats_repairs_a_lost_publish_without_waiting_for_the_heartbeat(
    make_order, customer, operator, settings, monkeypatch
):
    settings.WS_HEARTBEAT_SECONDS = 60
    settings.WS_CATCH_UP_SECONDS = 0.3
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        monkeypatch.setattr(publish, "group_send", lambda group, message: None)
        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picking")
        # One glance notices the order moved on, the next repairs it: no heartbeat frame in between.
        frame = await receive(ws, timeout=3)
        assert (frame["type"], frame["version"], frame["event"]["stage"]) == ("event", 3, "picking")
        assert await nothing_more(ws, timeout=0.8)
        await ws.disconnect()

    run(body)


# --- limits --------------------------------------------------------------------------------


def test_connections_per_user_are_limited(make_order, customer, settings):
    settings.WS_MAX_CONNECTIONS_PER_USER = 2
    order = make_order("paid")

    async def body():
        first = await open_with_token(f"/ws/orders/{order.id}/", customer)
        second = await open_with_token(f"/ws/orders/{order.id}/", customer, client_ip="10.0.0.2")
        assert (await receive(first))["type"] == (await receive(second))["type"] == "snapshot"
        third = await open_with_token(f"/ws/orders/{order.id}/", customer, client_ip="10.0.0.3")
        assert await closed_with(third) == 4429
        await first.disconnect()
        fourth = await open_with_token(f"/ws/orders/{order.id}/", customer, client_ip="10.0.0.4")
        assert (await receive(fourth))["type"] == "snapshot"
        await second.disconnect()
        await fourth.disconnect()

    run(body)


def test_connections_per_ip_are_limited(make_order, customer, staff, settings):
    settings.WS_MAX_CONNECTIONS_PER_IP = 1
    order = make_order("paid")

    async def body():
        first = await open_with_token(f"/ws/orders/{order.id}/", customer, client_ip="10.9.9.9")
        assert (await receive(first))["type"] == "snapshot"
        second = socket(f"/ws/orders/{order.id}/", client_ip="10.9.9.9")
        await second.connect()
        assert await closed_with(second) == 4429
        await first.disconnect()

    run(body)


def test_too_many_messages_per_second_closes_4429(make_order, customer, settings):
    settings.WS_MAX_MESSAGES_PER_SECOND = 3
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        for _ in range(5):
            await ws.send_json_to({"type": "resync", "since_version": 2})
        assert await closed_with(ws) == 4429

    run(body)


def test_a_frame_over_the_size_limit_closes_4429(make_order, customer, settings):
    settings.WS_MAX_FRAME_BYTES = 1024
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        await ws.send_json_to({"type": "resync", "since_version": 2, "padding": "x" * 2000})
        assert await closed_with(ws) == 4429

    run(body)


def test_messages_within_the_limits_keep_the_socket(make_order, customer, settings):
    settings.WS_MAX_MESSAGES_PER_SECOND = 5
    order = make_order("paid")

    async def body():
        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        for _ in range(3):
            await ws.send_json_to({"type": "resync", "since_version": 2})
            assert (await receive(ws))["type"] == "heartbeat"
            await asyncio.sleep(0.25)
        await ws.disconnect()

    run(body)


async def _members(group: str) -> list[str]:
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return list(layer.groups.get(group, {}))
    # RedisPubSubChannelLayer: membership is this process's, per group channel.
    loop_layer = layer._get_layer()
    return sorted(loop_layer.groups.get(loop_layer._get_group_channel_name(group), set()))


def test_heartbeat_rejoins_the_group_after_it_expired(make_order, customer, operator, settings):
    settings.WS_HEARTBEAT_SECONDS = 0.4
    order = make_order("paid")

    async def body():
        from channels.layers import get_channel_layer

        ws = await open_with_session(f"/ws/orders/{order.id}/", customer)
        await receive(ws)
        group = publish.order_group(order.id)
        members = await _members(group)
        assert len(members) == 1
        await get_channel_layer().group_discard(group, members[0])  # as group_expiry would
        assert await _members(group) == []
        beat = await receive(ws, timeout=2)
        assert beat["type"] == "heartbeat"
        assert await _members(group) == members
        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picking")
        frame = await receive(ws, timeout=2)
        while frame["type"] == "heartbeat":
            frame = await receive(ws, timeout=2)
        assert (frame["type"], frame["version"]) == ("event", 3)
        await ws.disconnect()

    run(body)


def _lease_until(scope: str, member: str) -> float | None:
    from xiaoxiang.sockets import connection_slots

    client = connection_slots._client()
    if client is None:
        return connection_slots._local[scope].get(member)
    return client.zscore(connection_slots._key(scope), member)


def test_one_housekeeping_tick_renews_every_sockets_slots(make_order, customer, other_customer, settings):
    from xiaoxiang.sockets import housekeeping

    settings.WS_HEARTBEAT_SECONDS = 0.5
    order = make_order("paid")

    async def body():
        first = await open_with_session(f"/ws/orders/{order.id}/", customer)
        second = await open_with_token("/ws/notifications/", other_customer)
        await receive(first)
        await receive(second)
        keeper = housekeeping()
        assert len(keeper.sockets) == 2  # one timer for both, no task of their own
        leases = [(scope, socket.channel_name) for socket in keeper.sockets for scope in socket.slots]
        assert len(leases) == 4  # each socket: its IP and its user
        before = {}
        for lease in leases:
            before[lease] = await database_sync_to_async(_lease_until)(*lease)
        for ws in (first, second):
            assert (await receive(ws, timeout=2))["type"] == "heartbeat"
        for lease in leases:
            assert await database_sync_to_async(_lease_until)(*lease) > before[lease]
        await first.disconnect()
        await second.disconnect()
        for lease in leases:
            assert await database_sync_to_async(_lease_until)(*lease) is None

    run(body)
