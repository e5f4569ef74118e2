"""POST /api/rider/locations/: per-point validation, idempotent re-uploads (also racing
retries on PostgreSQL), late batches, and a constant number of queries per batch."""

import datetime as dt
import json
import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import Order
from tests.api.conftest import bearer, db_counts, point, rider_state, track
from tracking.api.serializers import LocationPointInputSerializer, location_point_parse
from tracking.models import EventKind, TrackingEvent
from tracking.services import location_max_future

pytestmark = pytest.mark.django_db

URL = "/api/rider/locations/"


def _post(client, body):
    return client.post(URL, body, format="json")


def _locations(order: Order) -> list[TrackingEvent]:
    return list(TrackingEvent.objects.filter(order=order, kind=EventKind.LOCATION).order_by("recorded_at"))


def test_a_batch_becomes_location_events_in_device_time_order(api, rider, make_order):
    order = make_order("delivering")
    points = track(5)

    response = _post(api(rider), {"points": list(reversed(points))})

    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "duplicates": 0, "rejected": []}
    stored = _locations(order)
    assert [event.client_id for event in stored] == [f"p-{index}" for index in range(5)]
    # Versions follow device time, whatever order the batch came in.
    assert [event.version for event in stored] == list(range(order.version + 1, order.version + 6))
    assert Order.objects.get(pk=order.id).version == order.version + 5


def test_points_go_to_every_delivering_order_of_the_rider(api, rider, make_order, other_customer):
    first = make_order("delivering")
    second = make_order("delivering", owner=other_customer)
    make_order("paid")

    response = _post(api(rider), {"points": track(2)})

    assert response.json()["accepted"] == 2
    assert len(_locations(first)) == len(_locations(second)) == 2


def test_a_rider_without_delivering_orders_is_still_tracked(api, rider, warehouse):
    response = _post(api(rider), {"points": track(1)})

    assert response.status_code == 200
    assert TrackingEvent.objects.count() == 0
    assert rider_state(rider)[2] is not None


def _bad_points(now: dt.datetime) -> list[tuple[str, object, str]]:
    """(name, point, field in its errors)."""
    good = point("bad", at=now)
    without = {key: value for key, value in good.items() if key != "client_id"}
    return [
        ("lat above 90", {**good, "lat": 90.000001}, "lat"),
        ("lat below -90", {**good, "lat": -91}, "lat"),
        ("lon above 180", {**good, "lon": 180.5}, "lon"),
        ("lon below -180", {**good, "lon": -180.5}, "lon"),
        ("lat as a string", {**good, "lat": "31.2"}, "lat"),
        ("lat as a boolean", {**good, "lat": True}, "lat"),
        ("lon null", {**good, "lon": None}, "lon"),
        ("lat missing", {key: value for key, value in good.items() if key != "lat"}, "lat"),
        ("huge integer", {**good, "lon": 10**400}, "lon"),
        ("client_id missing", without, "client_id"),
        ("client_id blank", {**good, "client_id": ""}, "client_id"),
        ("client_id too long", {**good, "client_id": "x" * 65}, "client_id"),
        ("client_id with NUL", {**good, "client_id": "a\x00b"}, "client_id"),
        ("client_id with a lone surrogate", {**good, "client_id": "a\ud800b"}, "client_id"),
        ("year 1", {**good, "recorded_at": "0001-01-01T00:00:00+05:00"}, "recorded_at"),
        ("naive time", {**good, "recorded_at": now.replace(tzinfo=None).isoformat()}, "recorded_at"),
        ("not a time", {**good, "recorded_at": "yesterday"}, "recorded_at"),
        ("time as a number", {**good, "recorded_at": 1767225600}, "recorded_at"),
        ("far future", {**good, "recorded_at": (now + dt.timedelta(minutes=6)).isoformat()}, "recorded_at"),
        ("older than the order", {**good, "recorded_at": (now - dt.timedelta(hours=1)).isoformat()}, "recorded_at"),
        ("negative accuracy", {**good, "accuracy": -1}, "accuracy"),
        ("speed as a string", {**good, "speed": "fast"}, "speed"),
        ("heading above 360", {**good, "heading": 361}, "heading"),
        ("not an object", [31.2, 121.4], "non_field_errors"),
    ]


BAD_POINTS = [name for name, _, _ in _bad_points(timezone.now())]


def _bad_point(name: str, now: dt.datetime) -> tuple[object, str]:
    return {case: (bad, field) for case, bad, field in _bad_points(now)}[name]


@pytest.mark.parametrize("name", BAD_POINTS)
def test_one_bad_point_is_rejected_on_its_own(api, rider, make_order, name):
    order = make_order("delivering")
    now = timezone.now()
    bad, field = _bad_point(name, now)
    body = {"points": [*track(2, start=now), bad, *track(1, start=now, prefix="q")]}
    before = rider_state(rider)

    # json.dumps escapes lone surrogates (\ud800) as a real client would send them.
    response = api(rider).post(URL, json.dumps(body), content_type="application/json")

    assert response.status_code == 200, name
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (3, 0), name
    assert [entry["index"] for entry in body["rejected"]] == [2], name
    assert field in body["rejected"][0]["errors"], name
    assert {event.client_id for event in _locations(order)} == {"p-0", "p-1", "q-0"}
    assert rider_state(rider) != before


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["lat", "lon", "speed"])
def test_non_finite_json_tokens_reject_only_their_point_and_never_reach_the_database(
    api, rider, make_order, token, field
):
    order = make_order("delivering")
    points = track(3)
    points[1][field] = "__TOKEN__"
    body = json.dumps({"points": points}).replace('"__TOKEN__"', token)

    response = api(rider).post(URL, body, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert response.json()["rejected"] == [{"index": 1, "errors": {field: ["Must be a finite number."]}}]
    stored = _locations(order)
    assert [event.client_id for event in stored] == ["p-0", "p-2"]
    assert all(math.isfinite(float(event.latitude)) and math.isfinite(float(event.longitude)) for event in stored)
    assert all(event.speed is None or math.isfinite(event.speed) for event in stored)


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        '{"points": []}',
        '{"points": "p-1"}',
        '{"points": {"client_id": "p-1"}}',
        '{"points": null}',
        "[]",
        "null",
        '"points"',
        "{",
        "",
        "NaN",
    ],
)
def test_a_body_that_is_not_a_list_of_points_is_400_and_stores_nothing(api, rider, make_order, body):
    make_order("delivering")
    before = (db_counts(), rider_state(rider))

    response = api(rider).post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"]
    assert (db_counts(), rider_state(rider)) == before


def test_more_than_500_points_is_400_and_stores_nothing(api, rider, make_order):
    make_order("delivering")
    before = (db_counts(), rider_state(rider))

    response = _post(api(rider), {"points": track(501, step_seconds=0.1)})

    assert response.status_code == 400
    assert "points" in response.json()
    assert (db_counts(), rider_state(rider)) == before


def test_a_form_body_is_415_and_stores_nothing(api, rider, make_order):
    make_order("delivering")
    before = db_counts()

    response = api(rider).post(URL, {"points": "x"})

    assert response.status_code == 415
    assert db_counts() == before


def test_re_uploading_a_batch_is_a_no_op(api, rider, make_order):
    order = make_order("delivering")
    points = track(10)
    first = _post(api(rider), {"points": points})
    version = Order.objects.get(pk=order.id).version
    before = db_counts()

    again = _post(api(rider), {"points": points + track(1, prefix="new")})

    assert first.json() == {"accepted": 10, "duplicates": 0, "rejected": []}
    assert again.json() == {"accepted": 1, "duplicates": 10, "rejected": []}
    assert db_counts() == {**before, "events": before["events"] + 1}
    assert Order.objects.get(pk=order.id).version == version + 1


def test_a_client_id_twice_in_one_batch_is_stored_once(api, rider, make_order):
    order = make_order("delivering")
    points = track(2)

    response = _post(api(rider), {"points": [*points, points[0]]})

    assert response.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    assert len(_locations(order)) == 2


def test_a_late_batch_fills_history_without_moving_the_live_position_back(api, rider, customer, make_order):
    order = make_order("delivering")
    start = timezone.now()
    live = point("live", at=start + dt.timedelta(seconds=60), lat=31.1950, lon=121.4450)
    offline = [
        point(f"off-{index}", at=start + dt.timedelta(seconds=10 * index), lat=31.19 + index * 0.001, lon=121.44)
        for index in range(1, 6)
    ]

    _post(api(rider), {"points": [live]})
    position_after_live = rider_state(rider)
    response = _post(api(rider), {"points": offline})

    assert response.json()["accepted"] == 5
    assert rider_state(rider) == position_after_live == (31.195, 121.445, start + dt.timedelta(seconds=60))
    snapshot = api(rider).get(f"/api/orders/{order.id}/").json()
    assert snapshot["rider_position"]["lat"] == pytest.approx(31.195)
    assert snapshot["rider_position"]["recorded_at"] == (start + dt.timedelta(seconds=60)).isoformat()
    assert [event.client_id for event in _locations(order)] == [f"off-{index}" for index in range(1, 6)] + ["live"]
    trajectory = json.loads(api(rider).get(f"/api/orders/{order.id}/trajectory/").content)
    path = trajectory["features"][0]
    assert path["geometry"]["coordinates"][-1] == [121.445, 31.195]
    assert path["properties"]["times"] == sorted(path["properties"]["times"])


@pytest.mark.parametrize("other_count", [1, 500])
def test_the_query_count_does_not_depend_on_the_batch_size(api, rider, make_order, other_count):
    make_order("delivering")
    client = api(rider)
    _post(client, {"points": track(1, prefix="warm")})  # first request of the process does one-off work

    with CaptureQueriesContext(connection) as one:
        assert _post(client, {"points": track(1, prefix="one")}).json()["accepted"] == 1
    with CaptureQueriesContext(connection) as many:
        response = _post(client, {"points": track(other_count, prefix="many", step_seconds=0.5)})

    assert response.json()["accepted"] == other_count
    assert len(many) == len(one), [query["sql"][:120] for query in many.captured_queries]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_batch_store_each_point_once(daphne_server, rider, make_order):
    order = make_order("delivering")
    points = track(50)
    headers = {"Authorization": bearer(rider)}

    def upload(_: int) -> dict:
        response = httpx.post(f"{daphne_server.url}{URL}", json={"points": points}, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(upload, range(8)))

    assert sum(result["accepted"] for result in results) == 50
    assert sum(result["duplicates"] for result in results) == 50 * 7
    assert len(_locations(order)) == 50
    assert sorted(event.version for event in _locations(order)) == list(range(order.version + 1, order.version + 51))


@pytest.mark.parametrize("name", BAD_POINTS)
def test_the_documented_serializer_and_the_fast_validator_agree(name):
    now = timezone.now()
    bad, field = _bad_point(name, now)
    serializer = LocationPointInputSerializer(data=bad)

    point, errors = location_point_parse(bad, latest=now + location_max_future())

    if name == "older than the order":  # only the service knows the order
        assert serializer.is_valid() and point is not None
        return
    assert not serializer.is_valid(), name
    assert point is None, name
    assert set(errors) == set(serializer.errors) == {field}, name
