"""GET /api/orders/{id}/trajectory/: a GeoJSON FeatureCollection (RFC 7946) of the rider's
path and the order's status and stage events, coarsened for customers."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.api.conftest import point
from tracking.models import EventKind, TrackingEvent

pytestmark = pytest.mark.django_db


def _trajectory(api, user, order) -> dict:
    response = api(user).get(f"/api/orders/{order.id}/trajectory/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/geo+json"
    return json.loads(response.content)


# 11 m between points a fraction of a second apart: a plausible ride (the GPS quality rule flags impossible speeds).
STEP = 0.0001


def _drive(api, rider, order) -> list[dict]:
    start = timezone.now()
    points = [
        point(
            f"t-{index}",
            at=start + dt.timedelta(microseconds=100 * index),
            lat=31.188123 + index * STEP,
            lon=121.437456,
        )
        for index in range(4)
    ]
    # Uploaded out of order: the path still follows device time.
    api(rider).post("/api/rider/locations/", {"points": points[2:] + points[:2]}, format="json")
    return points


def test_the_rider_sees_the_full_path_and_every_event(api, rider, make_order):
    order = make_order("delivering")
    points = _drive(api, rider, order)

    collection = _trajectory(api, rider, order)

    assert collection["type"] == "FeatureCollection"
    assert "crs" not in collection  # RFC 7946: WGS 84 lon/lat only
    path, *events = collection["features"]
    assert path["type"] == "Feature"
    assert path["geometry"] == {
        "type": "LineString",
        "coordinates": [[121.437456, round(31.188123 + index * STEP, 6)] for index in range(4)],
    }
    assert path["properties"]["times"] == [item["recorded_at"] for item in points]
    assert path["properties"]["kind"] == "path"
    assert [(event["properties"]["kind"], event["properties"]["label"]) for event in events] == [
        ("status", "待支付"),
        ("status", "已支付"),
        ("stage", "拣货中"),
        ("stage", "拣货完成"),
        ("stage", "已打包"),
        ("status", "配送中"),
    ]
    times = [event["properties"]["time"] for event in events]
    assert times == sorted(times)
    assert all(event["geometry"]["type"] == "Point" for event in events)
    # Dispatch happened at the warehouse.
    assert events[-1]["geometry"]["coordinates"] == [121.437, 31.188]


def test_the_customer_sees_coordinates_at_4_decimals(api, customer, rider, make_order):
    order = make_order("delivering")
    _drive(api, rider, order)

    path, *events = _trajectory(api, customer, order)["features"]

    assert path["geometry"]["coordinates"] == [[121.4375, round(31.188123 + index * STEP, 4)] for index in range(4)]
    for feature in events:
        lon, lat = feature["geometry"]["coordinates"]
        assert (round(lon, 4), round(lat, 4)) == (lon, lat)


def test_delivery_is_placed_where_the_rider_last_was(api, rider, make_order):
    order = make_order("delivering")
    points = _drive(api, rider, order)
    api(rider).post(f"/api/rider/orders/{order.id}/delivered/", {}, format="json")

    delivered = _trajectory(api, rider, order)["features"][-1]

    assert delivered["properties"]["label"] == "已完成"
    assert delivered["geometry"]["coordinates"] == [points[-1]["lon"], round(points[-1]["lat"], 6)]


def test_the_customer_sees_no_path_before_dispatch(api, customer, staff, make_order):
    order = make_order("packed")
    # A stray point recorded against an order that is not dispatched yet (e.g. imported history).
    TrackingEvent.objects.create(
        order=order,
        status=order.status,
        kind=EventKind.LOCATION,
        latitude=Decimal("31.19"),
        longitude=Decimal("121.44"),
        recorded_at=timezone.now(),
        version=order.version + 1,
    )

    customer_kinds = [feature["properties"]["kind"] for feature in _trajectory(api, customer, order)["features"]]
    staff_kinds = [feature["properties"]["kind"] for feature in _trajectory(api, staff, order)["features"]]

    assert "path" not in customer_kinds
    assert staff_kinds[0] == "path"


def test_one_point_is_a_degenerate_line(api, rider, make_order):
    order = make_order("delivering")
    api(rider).post(
        "/api/rider/locations/", {"points": [point("only", at=timezone.now(), lat=31.2, lon=121.45)]}, format="json"
    )

    path = _trajectory(api, rider, order)["features"][0]

    assert path["geometry"] == {"type": "LineString", "coordinates": [[121.45, 31.2], [121.45, 31.2]]}


def test_no_points_means_no_path_feature(api, customer, make_order):
    order = make_order("pending")

    features = _trajectory(api, customer, order)["features"]

    assert [feature["properties"]["label"] for feature in features] == ["待支付"]


def test_clients_may_ask_for_geojson_explicitly(api, customer, make_order):
    order = make_order("pending")

    response = api(customer).get(f"/api/orders/{order.id}/trajectory/", HTTP_ACCEPT="application/geo+json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/geo+json"
