"""The sharding path (docs/data.md): every hot-path statement on order_tracking names its order,
so on Citus each runs on one shard. This fails when a hot query stops filtering by order id."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import Order
from tests.api.conftest import point
from tracking.snapshot import order_snapshot_build
from tracking.stream import order_resync_frames

pytestmark = pytest.mark.django_db

ORDER_FILTER = re.compile(r'order_id"?\s*(=|IN\s*\(|= ANY)', re.IGNORECASE)


def _tracking_statements(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in captured.captured_queries if "order_tracking" in query["sql"]]


def _assert_by_order(statements: list[str]) -> None:
    assert statements, "the path read order_tracking"
    for sql in statements:
        if sql.lstrip().upper().startswith("INSERT") or "INSERT INTO" in sql.upper():
            # A row is placed by its own order_id (the distribution column).
            assert "order_id" in sql, sql
        else:
            assert ORDER_FILTER.search(sql), f"no order id condition: {sql}"


def test_the_ingest_and_every_read_of_an_order_filter_by_its_id(api, rider, staff, make_order):
    order = make_order("delivering")
    start = timezone.now()
    points = [point(f"d-{index}", at=start + dt.timedelta(milliseconds=index)) for index in range(3)]

    with CaptureQueriesContext(connection) as ingest:
        assert api(rider).post("/api/rider/locations/", {"points": points}, format="json").status_code == 200
    order = Order.objects.get(pk=order.pk)
    with CaptureQueriesContext(connection) as snapshot:
        order_snapshot_build(order=order)
    with CaptureQueriesContext(connection) as trajectory:
        assert api(staff).get(f"/api/orders/{order.id}/trajectory/").status_code == 200
    with CaptureQueriesContext(connection) as resync:
        frames = order_resync_frames(order=order, role="staff", since_version=1, max_events=100)
    with CaptureQueriesContext(connection) as events:
        assert api(staff).get(f"/api/orders/{order.id}/events/?since_version=2").status_code == 200

    assert frames
    for captured in (ingest, snapshot, trajectory, resync, events):
        _assert_by_order(_tracking_statements(captured))


def test_the_check_catches_a_query_without_the_order():
    with pytest.raises(AssertionError, match="no order id condition"):
        _assert_by_order(['SELECT * FROM "order_tracking" WHERE "order_tracking"."kind" = \'location\''])
    _assert_by_order(['SELECT 1 FROM "order_tracking" WHERE "order_tracking"."order_id" = \'x\''])
