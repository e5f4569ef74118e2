"""order_tracking on PostgreSQL: partitioned by day on the order's creation time (pg_partman), and a
re-uploaded client_id stays a no-op whichever way a row is inserted, on both sides of a partition boundary."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from orders.models import Order
from tests.api.conftest import point
from tracking.models import EventKind, OperatorType, TrackingEvent
from tracking.retention import PARENT_TABLE

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _rows(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_the_table_is_partitioned_by_day_on_the_order_creation_time_with_partitions_ahead():
    today = timezone.now().date()

    assert _rows("SELECT pg_get_partkeydef('order_tracking'::regclass)") == [("RANGE (order_created_at)",)]
    assert _rows(
        "SELECT partition_interval, premake FROM partman.part_config WHERE parent_table = %s", [PARENT_TABLE]
    ) == [("1 day", 7)]
    names = {
        name
        for (name,) in _rows(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'order_tracking'::regclass"
        )
    }
    assert {f"order_tracking_p{today + dt.timedelta(days=ahead):%Y_%m_%d}" for ahead in range(8)} <= names
    assert "order_tracking_default" in names
    keys = dict(
        _rows(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'order_tracking'::regclass AND contype IN ('p', 'u')"
        )
    )
    assert keys == {
        "order_tracking_pkey": "PRIMARY KEY (id, order_created_at)",
        "order_tracking_unique_version": "UNIQUE (order_id, version, order_created_at)",
    }
    assert _rows("SELECT indexdef FROM pg_indexes WHERE indexname = 'order_tracking_unique_client_id'") == [
        (
            "CREATE UNIQUE INDEX order_tracking_unique_client_id ON ONLY public.order_tracking USING btree"
            " (order_id, client_id, order_created_at) WHERE (client_id IS NOT NULL)",
        )
    ]


def _partitions(order: Order) -> set[str]:
    return {
        name for (name,) in _rows("SELECT tableoid::regclass::text FROM order_tracking WHERE order_id = %s", [order.pk])
    }


def _created_at(order: Order, created_at: dt.datetime) -> Order:
    Order.objects.filter(pk=order.pk).update(create_time=created_at)
    TrackingEvent.objects.filter(order_id=order.pk).update(order_created_at=created_at)
    return Order.objects.get(pk=order.pk)


def test_client_id_reuploads_are_no_ops_across_a_partition_boundary(api, rider, other_rider, make_order):
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    _rows(
        "SELECT partman.create_partition_time(%s, ARRAY[%s::timestamptz])",
        [PARENT_TABLE, midnight - dt.timedelta(days=1)],
    )
    # Two delivering orders of one rider, created either side of midnight: two partitions.
    before = _created_at(make_order("delivering"), midnight - dt.timedelta(microseconds=1))
    after = _created_at(make_order("delivering"), midnight)
    start = timezone.now()
    points = [point(f"b-{index}", at=start + dt.timedelta(milliseconds=index)) for index in range(3)]

    first = api(rider).post("/api/rider/locations/", {"points": points}, format="json").json()
    stored = sorted(
        TrackingEvent.objects.filter(kind=EventKind.LOCATION).values_list("order_id", "client_id", "version")
    )
    again = api(rider).post("/api/rider/locations/", {"points": points}, format="json").json()

    assert first == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert again == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert _partitions(before) == {f"order_tracking_p{midnight - dt.timedelta(days=1):%Y_%m_%d}"}
    assert _partitions(after) == {f"order_tracking_p{midnight:%Y_%m_%d}"}
    versions = {order.pk: Order.objects.get(pk=order.pk).version for order in (before, after)}

    # The ORM's ignore_conflicts insert and a raw INSERT ... ON CONFLICT DO NOTHING, with new ids.
    copies = [
        TrackingEvent(
            order=order,
            status=order.status,
            kind=EventKind.LOCATION,
            operator_type=OperatorType.RIDER,
            recorded_at=start,
            version=9999,
            client_id="b-0",
            latitude=1,
            longitude=1,
        )
        for order in (before, after)
    ]
    TrackingEvent.objects.bulk_create(copies, ignore_conflicts=True)
    with connection.cursor() as cursor:
        for order in (before, after):
            cursor.execute(
                "INSERT INTO order_tracking (id, order_id, order_created_at, status, kind, stage, address, operator_id,"
                " recorded_at, version, geohash, client_id, data, create_time)"
                " SELECT md5(random()::text), id, create_time, status, 'location', '', '', '', now(), 9998, '',"
                " 'b-1', '{}', now() FROM orders WHERE id = %s ON CONFLICT DO NOTHING",
                [order.pk],
            )
            assert cursor.rowcount == 0

    assert (
        sorted(TrackingEvent.objects.filter(kind=EventKind.LOCATION).values_list("order_id", "client_id", "version"))
        == stored
    )
    assert {order.pk: Order.objects.get(pk=order.pk).version for order in (before, after)} == versions


def test_every_event_carries_its_order_creation_time(make_order):
    order = make_order("packed")

    assert set(TrackingEvent.objects.filter(order=order).values_list("order_created_at", flat=True)) == {
        order.create_time
    }
