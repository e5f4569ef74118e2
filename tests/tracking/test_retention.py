"""Retention: completed trajectories archived on the order, expired location events removed
(whole partitions on PostgreSQL), status/stage events kept, the trajectory API unchanged for old orders."""

import datetime as dt
import json
import time

import pytest
from django.db import connection
from django.utils import timezone

from orders import services
from orders.models import Order
from tests.api.conftest import point
from tracking import tasks
from tracking.models import EventKind, TrackingEvent
from tracking.retention import ARCHIVE_TOLERANCE_M, PARENT_TABLE, path_simplify, tracking_retention_apply
from xiaoxiang.celery import app

pytestmark = pytest.mark.django_db

# About 1.1 m per 0.00001 degree of latitude.
METRE_LAT = 0.00001 / 1.11


def _line(count: int, *, offsets: dict[int, float] | None = None) -> list[tuple[float, float, int]]:
    """Points going north in 10 m steps; offsets[i] moves point i east by that many metres (about)."""
    offsets = offsets or {}
    return [
        (31.0 + index * 10 * METRE_LAT, 121.0 + offsets.get(index, 0) * METRE_LAT * 1.17, index)
        for index in range(count)
    ]


def test_a_straight_ride_keeps_only_its_ends():
    assert [index for *_, index in path_simplify(_line(50), tolerance_m=5)] == [0, 49]


def test_a_turn_beyond_the_tolerance_is_kept_and_jitter_below_it_is_not():
    path = _line(21, offsets={7: 3.0, 14: 40.0})

    # A 40 m dogleg at 14 keeps it and the points where it leaves and rejoins the line; 3 m at 7 goes.
    assert [index for *_, index in path_simplify(path, tolerance_m=5)] == [0, 13, 14, 15, 20]


def test_points_asked_for_are_kept():
    assert [index for *_, index in path_simplify(_line(50), tolerance_m=5, keep={10, 30})] == [0, 10, 30, 49]


def test_short_paths_are_kept_as_they_are():
    assert path_simplify(_line(2), tolerance_m=5) == _line(2)
    assert path_simplify([], tolerance_m=5) == []


def _ride(api, rider, order, count: int = 30) -> None:
    start = timezone.now()
    # North in 10 m steps with one 40 m dogleg: the archive keeps 3 points.
    points = [
        point(
            f"r-{order.id[:6]}-{index}",
            at=start + dt.timedelta(milliseconds=index + 1),
            lat=31.19 + index * 10 * METRE_LAT,
            lon=121.44 + (40 * METRE_LAT * 1.17 if index == 15 else 0),
        )
        for index in range(count)
    ]
    response = api(rider).post("/api/rider/locations/", {"points": points}, format="json")
    assert response.json()["accepted"] == count


def _age(order: Order, *, days: int, created_at: dt.datetime | None = None) -> Order:
    """Move the order (and its events' partition key with it) `days` into the past."""
    created_at = created_at or timezone.now() - dt.timedelta(days=days)
    Order.objects.filter(pk=order.pk).update(create_time=created_at)
    TrackingEvent.objects.filter(order_id=order.pk).update(order_created_at=created_at)
    return Order.objects.get(pk=order.pk)


def _partition_for(day: dt.datetime) -> str:
    """pg_partman makes the day's partition (as if the table had existed then); its name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT partman.create_partition_time(%s, ARRAY[%s::timestamptz])", [PARENT_TABLE, day])
    return f"order_tracking_p{day:%Y_%m_%d}"


def _partition_of(order: Order) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT tableoid::regclass::text FROM order_tracking WHERE order_id = %s", [order.pk])
        return {name for (name,) in cursor.fetchall()}


def _kinds(order: Order) -> list[tuple[int, str]]:
    return list(TrackingEvent.objects.filter(order_id=order.pk).order_by("version").values_list("version", "kind"))


def test_retention_archives_old_completed_orders_and_removes_only_their_location_events(
    api, rider, make_order, staff, settings
):
    settings.TRACKING_RETENTION_DAYS = 90
    old = make_order("delivering")
    _ride(api, rider, old)
    # The points end up to 30 ms ahead of now: delivered comes after them all (else it anchors one more point).
    time.sleep(0.05)
    services.order_mark_delivered(order_id=old.id, rider=rider)
    before = json.loads(api(staff).get(f"/api/orders/{old.id}/trajectory/").content)
    day = (timezone.now() - dt.timedelta(days=91)).replace(hour=0, minute=0, second=0, microsecond=0)
    partition = _partition_for(day) if connection.vendor == "postgresql" else None
    # Moving the partition key after the fact: the rows follow into the old day's partition.
    old = _age(old, days=91, created_at=day + dt.timedelta(hours=12))
    if partition is not None:
        assert _partition_of(old) == {partition}
    kept = [(version, kind) for version, kind in _kinds(old) if kind != EventKind.LOCATION]
    recent = make_order("delivering", assigned=rider)
    recent_events = _kinds(recent)

    result = tracking_retention_apply()

    old.refresh_from_db()
    assert result.archived == 1
    assert _kinds(old) == kept
    assert _kinds(recent) == recent_events
    if partition is not None:
        assert result.dropped_partitions == [partition]
        assert result.deleted == 0
        assert _partition_of(old) == {"order_tracking_default"}
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [partition])
            assert cursor.fetchone() == (None,)
    else:
        assert result.deleted == 30
    archive = old.trajectory_archive
    assert archive["tolerance_m"] == ARCHIVE_TOLERANCE_M
    assert archive["recorded_points"] == 30
    assert [entry["kind"] for entry in archive["timeline"]] == ["status"] * 2 + ["stage"] * 3 + ["status"] * 2
    # The API keeps its shape: a LineString of the simplified path, the same event points.
    after = json.loads(api(staff).get(f"/api/orders/{old.id}/trajectory/").content)
    path_before, *events_before = before["features"]
    path_after, *events_after = after["features"]
    full = path_before["geometry"]["coordinates"]
    assert path_after["geometry"]["coordinates"] == [full[0], full[14], full[15], full[16], full[29]]
    assert path_after["properties"]["times"] == [path_before["properties"]["times"][i] for i in (0, 14, 15, 16, 29)]
    assert events_after == events_before


def test_retention_twice_changes_nothing_more(api, rider, make_order, settings):
    order = make_order("completed")
    order = _age(order, days=settings.TRACKING_RETENTION_DAYS + 1)
    first = tracking_retention_apply()
    archive = Order.objects.get(pk=order.pk).trajectory_archive

    second = tracking_retention_apply()

    assert first.archived == 1
    assert (second.archived, second.dropped_partitions, second.deleted) == (0, [], 0)
    assert Order.objects.get(pk=order.pk).trajectory_archive == archive


def test_orders_inside_retention_and_unfinished_orders_are_not_archived(api, rider, make_order, settings):
    young = _age(make_order("completed"), days=settings.TRACKING_RETENTION_DAYS - 1)
    cancelled = _age(make_order("cancelled"), days=settings.TRACKING_RETENTION_DAYS + 1)

    result = tracking_retention_apply()

    assert result.archived == 0
    assert Order.objects.get(pk=young.pk).trajectory_archive is None
    assert Order.objects.get(pk=cancelled.pk).trajectory_archive is None


def test_the_beat_runs_retention_hourly_through_a_thin_task(make_order, settings):
    order = _age(make_order("completed"), days=settings.TRACKING_RETENTION_DAYS + 5)

    outcome = tasks.retention_apply.apply(throw=True).get()

    assert app.conf.beat_schedule["tracking-retention"] == {"task": "tracking.retention_apply", "schedule": 3600}
    assert outcome == {"archived": 1, "dropped_partitions": [], "deleted": 0}
    assert Order.objects.get(pk=order.pk).trajectory_archive["recorded_points"] == 0


def test_retention_days_default_to_90():
    from xiaoxiang import settings as project_settings

    assert project_settings.TRACKING_RETENTION_DAYS == 90
