"""The hot path's metrics move in-process (SQLite or PostgreSQL): ingest, publish, frames and socket counts.

Read from the process's default registry; tests/ops/test_prometheus.py checks
the same metrics end to end through a real Prometheus.
"""

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY

from tests.api.conftest import bearer, track
from tests.realtime.conftest import (  # noqa: F401  (fixture)
    SAME_SITE,
    _fresh_realtime_state,
    closed_with,
    open_with_session,
    receive,
    run,
    socket,
)
from tracking import services
from tracking.api.serializers import location_batch_parse

pytestmark = pytest.mark.django_db(transaction=True)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_posted_batch_counts_its_points_times_the_request_and_observes_each_points_lag(client, rider, make_order):
    make_order("delivering")
    points = track(3)
    before = {
        "accepted": value("xiaoxiang_ingest_points_total", outcome="accepted"),
        "duplicate": value("xiaoxiang_ingest_points_total", outcome="duplicate"),
        "rejected": value("xiaoxiang_ingest_points_total", outcome="rejected"),
        "requests": value("xiaoxiang_ingest_request_seconds_count"),
        "lags": value("xiaoxiang_ingest_lag_seconds_count"),
        "published": value("xiaoxiang_channel_published_total", group="order"),
        "publishes": value("xiaoxiang_publish_seconds_count"),
    }
    body = {"points": [*points, points[0], {**points[1], "client_id": "bad", "lat": 91}]}

    response = client.post(
        "/api/rider/locations/", body, content_type="application/json", HTTP_AUTHORIZATION=bearer(rider)
    )

    assert response.json() == {
        "accepted": 3,
        "duplicates": 1,
        "rejected": [{"index": 4, "errors": response.json()["rejected"][0]["errors"]}],
    }
    assert value("xiaoxiang_ingest_points_total", outcome="accepted") == before["accepted"] + 3
    assert value("xiaoxiang_ingest_points_total", outcome="duplicate") == before["duplicate"] + 1
    assert value("xiaoxiang_ingest_points_total", outcome="rejected") == before["rejected"] + 1
    assert value("xiaoxiang_ingest_request_seconds_count") == before["requests"] + 1
    assert value("xiaoxiang_ingest_lag_seconds_count") == before["lags"] + 3
    # One publish of the order's three events after the commit.
    assert value("xiaoxiang_publish_seconds_count") == before["publishes"] + 1
    assert value("xiaoxiang_channel_published_total", group="order") == before["published"] + 1


def test_a_rolled_back_ingest_observes_no_lag(rider, make_order):
    from django.db import transaction

    make_order("delivering")
    parsed, _ = location_batch_parse({"points": track(2)})
    before = value("xiaoxiang_ingest_lag_seconds_count")

    with pytest.raises(RuntimeError), transaction.atomic():
        services.location_points_ingest(rider_user=rider, points=parsed)
        raise RuntimeError("roll back")

    assert value("xiaoxiang_ingest_lag_seconds_count") == before


def test_sockets_count_open_connects_closes_by_code_and_auth_failures(make_order, customer):
    order = make_order("delivering")
    opened = value("xiaoxiang_ws_connections_open", stream="orders")
    connects = value("xiaoxiang_ws_connects_total", stream="orders")
    closes_4401 = value("xiaoxiang_ws_closes_total", stream="orders", code="4401")
    auth_failures = value("xiaoxiang_ws_auth_failures_total", stream="orders")

    async def body():
        watcher = await open_with_session(f"/ws/orders/{order.id}/", customer)
        assert (await receive(watcher))["type"] == "snapshot"
        assert value("xiaoxiang_ws_connections_open", stream="orders") == opened + 1

        stranger = socket(f"/ws/orders/{order.id}/", headers=[SAME_SITE])
        await stranger.connect()
        await stranger.send_json_to({"type": "auth", "token": "not-a-jwt"})
        assert await closed_with(stranger) == 4401

        await watcher.disconnect()

    run(body)

    assert value("xiaoxiang_ws_connections_open", stream="orders") == opened
    assert value("xiaoxiang_ws_connects_total", stream="orders") == connects + 2
    assert value("xiaoxiang_ws_closes_total", stream="orders", code="4401") == closes_4401 + 1
    assert value("xiaoxiang_ws_auth_failures_total", stream="orders") == auth_failures + 1


def test_an_event_frame_observes_its_publish_to_frame_delay(make_order, customer, operator):
    from orders import services as order_services

    order = make_order("paid")
    before = value("xiaoxiang_ws_frame_delay_seconds_count", stream="orders")

    async def body():
        watcher = await open_with_session(f"/ws/orders/{order.id}/", customer)
        assert (await receive(watcher))["type"] == "snapshot"
        await database_sync_to_async(order_services.order_stage_report)(
            order_id=order.id, operator=operator, stage="picking"
        )
        frame = await receive(watcher)
        assert (frame["type"], frame["event"]["stage"]) == ("event", "picking")
        await watcher.disconnect()

    run(body)

    assert value("xiaoxiang_ws_frame_delay_seconds_count", stream="orders") == before + 1


def test_the_eta_error_is_delivery_time_minus_the_eta_predicted_at_dispatch(make_order, rider):
    from django.db import transaction

    from orders import services as order_services
    from orders.models import Order
    from tracking.events import tracking_event_record
    from tracking.metrics import eta_errors_recent
    from tracking.models import EventKind, OperatorType

    order = make_order("delivering")
    predicted = order.dispatched_at + dt.timedelta(minutes=20)
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        locked.eta = predicted
        tracking_event_record(
            order=locked,
            kind=EventKind.ETA,
            changed_fields=["eta"],
            operator_type=OperatorType.SYSTEM,
            data={"eta": predicted.isoformat()},
        )
    delivered = order_services.order_mark_delivered(order_id=order.pk, rider=rider)

    [error] = eta_errors_recent()
    assert error == pytest.approx((delivered.delivered_at - predicted).total_seconds(), abs=1e-3)
    assert value("xiaoxiang_eta_deliveries_measured") == 1
    assert value("xiaoxiang_eta_error_seconds", quantile="0.5") == pytest.approx(abs(error), abs=1e-3)
