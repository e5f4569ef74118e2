"""After a GPS batch commits: one send for the orders' events, the ops map and the ETA
debounce, no SQL when the cached snapshot can be advanced, and messages equal to
what the database says (issue 10)."""

import datetime as dt
import uuid

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import Order, OrderStatus
from tracking import publish
from tracking.models import EventKind, TrackingEvent
from tracking.role_views import VIEWS, order_for_role, view_role
from tracking.services import LocationPoint, location_points_ingest
from tracking.snapshot import changes_by_view, order_snapshot_build, snapshot_cached, snapshot_changes
from tracking.wire import event_payload
from xiaoxiang.push import group_send_many

pytestmark = pytest.mark.django_db


def _ingest(rider, *offsets_seconds: float) -> None:
    now = timezone.now()
    points = [
        (index, LocationPoint(uuid.uuid4().hex, 31.19 + index / 1000, 121.44, now + dt.timedelta(seconds=offset)))
        for index, offset in enumerate(offsets_seconds)
    ]
    location_points_ingest(rider_user=rider, points=points)


@pytest.fixture
def sends(monkeypatch):
    """Every group_send_many call of the publish path: (sends, claims), still sent for real."""
    calls = []

    def record(batch, *, claims=()):
        calls.append((list(batch), list(claims)))
        return group_send_many(batch, claims=claims)

    monkeypatch.setattr(publish, "group_send_many", record)
    return calls


def test_a_batch_is_one_send_with_the_order_the_ops_map_and_the_debounce_claim(
    make_order, rider, sends, settings, django_capture_on_commit_callbacks
):
    settings.TRACKING_JOBS_ENABLED = True
    order = make_order("delivering")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _ingest(rider, 5, 1, 3)
        assert sends == []  # nothing before commit

    # The ingest's one callback (without Redis the won claim then runs the ETA task in-process).
    assert callbacks[0].__qualname__ == "location_points_ingest.<locals>.after_commit"
    ((batch, claims),) = sends
    assert [group for group, _ in batch] == [f"order.{order.pk}", "ops"]
    assert claims == [(f"tracking.eta.debounce:{order.pk}", settings.ETA_DEBOUNCE_SECONDS)]
    message = batch[0][1]
    stored = TrackingEvent.objects.filter(order=order, kind=EventKind.LOCATION).order_by("version")
    # The payloads the ingest built without model instances are the stored events' wire shape.
    assert message["events"] == [event_payload(event) for event in stored]
    assert message["version"] == list(stored)[-1].version == order.version + 3
    assert batch[1][1]["rider"]["lat"] == pytest.approx(31.19)  # the newest point (5 s), not the last posted


def test_a_late_batch_sends_no_ops_move(make_order, rider, sends, django_capture_on_commit_callbacks):
    order = make_order("delivering")
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(rider, 60)
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(rider, 10, 20)  # older than the live position: history only

    late_batch, _ = sends[1]
    assert [group for group, _ in late_batch] == [f"order.{order.pk}"]


def test_the_publish_after_a_point_runs_no_sql_when_the_snapshot_is_cached(
    make_order, rider, django_capture_on_commit_callbacks
):
    order = make_order("delivering")
    with django_capture_on_commit_callbacks(execute=True):
        _ingest(rider, 1)  # caches the snapshot at the new version
    assert snapshot_cached(order.pk) is not None

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _ingest(rider, 2)
    with CaptureQueriesContext(connection) as queries:
        for callback in callbacks:
            callback()

    assert queries.captured_queries == []
    cached = snapshot_cached(order.pk)
    assert cached == order_snapshot_build(order=Order.objects.get(pk=order.pk))


def _naive_changes_by_view(before, after):
    """The definition: each view's snapshot diffed on its own."""

    def seen(snapshot, view):
        return order_for_role(snapshot, view_role(view), status=snapshot["status"])

    return {view: snapshot_changes(None if before is None else seen(before, view), seen(after, view)) for view in VIEWS}


def test_changes_by_view_equals_diffing_each_views_snapshot(make_order):
    order = make_order("delivering")
    snapshot = order_snapshot_build(order=order)
    position = {"lat": 31.191234, "lon": 121.441234, "recorded_at": "2026-01-01T00:00:00+00:00"}
    moved = {**snapshot, "version": snapshot["version"] + 1, "rider_position": position}
    # Moves below the customer's 4 decimals: staff see a change, the customer does not.
    nudged = {**moved, "version": moved["version"] + 1, "rider_position": {**position, "lat": 31.191236}}
    delivered = {**nudged, "version": nudged["version"] + 1, "status": OrderStatus.COMPLETED, "status_name": "x"}

    for before, after in [(None, moved), (snapshot, moved), (moved, nudged), (nudged, delivered), (snapshot, snapshot)]:
        assert changes_by_view(before, after) == _naive_changes_by_view(before, after)
    assert "rider_position" not in changes_by_view(moved, nudged)["customer"]
    assert changes_by_view(nudged, delivered)["customer"]["rider_position"] is None  # hidden after delivery


@pytest.mark.parametrize("backend", ["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_claim_is_won_once_per_window(backend, settings):
    if backend == "embedded" and settings.REDIS_URL:
        pytest.skip("the in-memory layer path runs without REDIS_URL")
    key = f"test-claim-{uuid.uuid4().hex}"

    assert group_send_many([], claims=[(key, 5)]) == {key}
    assert group_send_many([], claims=[(key, 5), (key + "-other", 5)]) == {key + "-other"}


@pytest.mark.redis
def test_the_redis_cache_keeps_one_client_per_pool():
    client = caches["default"]._cache

    assert client.get_client("a", write=True) is client.get_client("b", write=True)
