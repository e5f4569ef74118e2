"""/ws/ops/: staff only; every active rider's position and every alert, live."""

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from tests.realtime.conftest import closed_with, nothing_more, open_with_session, open_with_token, receive, run
from tracking.models import Alert, AlertKind, Rider
from tracking.ops import ops_alert_payload
from tracking.publish import alert_publish
from tracking.services import LocationPoint, location_points_ingest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("persona", ["customer", "rider", "operator"])
def test_non_staff_is_closed_4403(request, persona):
    user = request.getfixturevalue(persona)

    async def body():
        ws = await open_with_token("/ws/ops/", user)
        assert await closed_with(ws) == 4403

    run(body)


def test_staff_gets_riders_and_open_alerts_then_live_updates(make_order, staff, rider, other_rider):
    order = make_order("delivering")
    Rider.objects.filter(user=other_rider).update(online=False)
    old = Alert.objects.create(order=order, rider=rider, kind=AlertKind.STALL, message="stalled")
    Alert.objects.filter(pk=old.pk).update(resolved_at=timezone.now())
    alert = Alert.objects.create(order=order, rider=rider, kind=AlertKind.LATE, message="late")

    async def body():
        ws = await open_with_session("/ws/ops/", staff)
        state = await receive(ws)
        assert state["type"] == "ops.snapshot"
        assert [(r["id"], r["name"]) for r in state["riders"]] == [(rider.pk, "骑手rita")]
        assert [(a["id"], a["kind"], a["order"]) for a in state["alerts"]] == [(alert.pk, "late", order.id)]

        point = LocationPoint(client_id="ops-1", lat=31.19, lon=121.44, recorded_at=timezone.now())
        await database_sync_to_async(location_points_ingest)(rider_user=rider, points=[(0, point)])
        moved = await receive(ws)
        assert moved["type"] == "ops.riders"
        [mover] = moved["riders"]
        assert (mover["id"], mover["lat"], mover["lon"], mover["delivering"]) == (rider.pk, 31.19, 121.44, 1)

        def resolve():
            with transaction.atomic():
                Alert.objects.filter(pk=alert.pk).update(resolved_at=timezone.now() + dt.timedelta(seconds=1))
                alert_publish(ops_alert_payload(Alert.objects.get(pk=alert.pk)))

        await database_sync_to_async(resolve)()
        resolved = await receive(ws)
        assert resolved["type"] == "ops.alert"
        assert (resolved["alert"]["id"], resolved["alert"]["kind"]) == (alert.pk, "late")
        assert resolved["alert"]["resolved_at"] is not None
        assert await nothing_more(ws)
        await ws.disconnect()

    run(body)


def test_alert_publish_waits_for_commit(make_order, staff, rider):
    order = make_order("delivering")

    async def body():
        ws = await open_with_token("/ws/ops/", staff)
        await receive(ws)

        def open_and_roll_back():
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(order=order, rider=rider, kind=AlertKind.STALL, message="x")
                    alert_publish(ops_alert_payload(alert))
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass

        await database_sync_to_async(open_and_roll_back)()
        assert await nothing_more(ws, timeout=0.5)
        await ws.disconnect()

    run(body)


def test_rider_moves_reach_every_ops_socket_as_one_frame_per_flush(make_order, staff, rider, other_rider, settings):
    settings.OPS_FLUSH_SECONDS = 0.5
    make_order("delivering")

    async def body():
        first = await open_with_session("/ws/ops/", staff)
        second = await open_with_token("/ws/ops/", staff)
        for ws in (first, second):
            assert (await receive(ws))["type"] == "ops.snapshot"
        now = timezone.now()
        for step in range(3):
            for user, base in ((rider, 31.19), (other_rider, 31.29)):
                point = LocationPoint(
                    client_id=f"flush-{user.pk}-{step}",
                    lat=base + step / 1000,
                    lon=121.44,
                    recorded_at=now + dt.timedelta(seconds=5 * step),  # 111 m in 5 s: a plausible ride
                )
                await database_sync_to_async(location_points_ingest)(rider_user=user, points=[(0, point)])
        for ws in (first, second):
            frame = await receive(ws, timeout=3)
            assert frame["type"] == "ops.riders"
            assert sorted((r["id"], round(r["lat"], 6)) for r in frame["riders"]) == sorted(
                [(rider.pk, 31.192), (other_rider.pk, 31.292)]
            )
            assert await nothing_more(ws, timeout=0.8)
        await first.disconnect()
        await second.disconnect()

    run(body)
