"""GET /api/orders/{id}/events/ and /poll/: same visibility as the detail, bounded, woken by the publish path."""

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import AsyncClient
from rest_framework.test import APIClient

from orders import services
from tests.realtime.conftest import access_token

pytestmark = pytest.mark.django_db(transaction=True)


def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    return client


# --- events ----------------------------------------------------------------------------


def test_events_since_a_version_ascending(make_order, customer):
    order = make_order("packed")
    response = api(customer).get(f"/api/orders/{order.id}/events/?since_version=2")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 5
    assert body["has_more"] is False
    assert [(e["version"], e["kind"], e["stage"]) for e in body["events"]] == [
        (3, "stage", "picking"),
        (4, "stage", "picked"),
        (5, "stage", "packed"),
    ]


def test_events_are_paged(make_order, customer):
    order = make_order("packed")
    client = api(customer)
    first = client.get(f"/api/orders/{order.id}/events/?limit=2").json()
    assert ([e["version"] for e in first["events"]], first["has_more"]) == ([1, 2], True)
    last = client.get(f"/api/orders/{order.id}/events/?since_version=4&limit=2").json()
    assert ([e["version"] for e in last["events"]], last["has_more"]) == ([5], False)


def test_customer_events_hide_operator_data(make_order, customer, staff):
    order = make_order("delivering")
    customer_view = api(customer).get(f"/api/orders/{order.id}/events/?since_version=5").json()["events"]
    staff_view = api(staff).get(f"/api/orders/{order.id}/events/?since_version=5").json()["events"]
    assert staff_view[0]["data"] == {"rider": "rita"}
    assert customer_view[0]["data"] == {}


def test_events_session_auth_works(make_order, customer):
    order = make_order("paid")
    client = APIClient()
    client.force_login(customer)
    assert [e["version"] for e in client.get(f"/api/orders/{order.id}/events/").json()["events"]] == [1, 2]


@pytest.mark.parametrize("path", ["events", "poll"])
def test_outsider_and_unknown_order_get_404(make_order, other_customer, other_operator, path):
    order = make_order("paid")
    for user in (other_customer, other_operator):
        response = api(user).get(f"/api/orders/{order.id}/{path}/?timeout=0")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}
    assert api(other_customer).get(f"/api/orders/{'0' * 32}/{path}/?timeout=0").status_code == 404


@pytest.mark.parametrize("path", ["events", "poll"])
def test_anonymous_gets_401(make_order, path):
    order = make_order("paid")
    response = APIClient().get(f"/api/orders/{order.id}/{path}/?timeout=0")
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since_version=abc", "since_version"),
        ("since_version=-1", "since_version"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
    ],
)
@pytest.mark.parametrize("path", ["events", "poll"])
def test_bad_query_parameters_are_400(make_order, customer, path, query, field):
    order = make_order("paid")
    response = api(customer).get(f"/api/orders/{order.id}/{path}/?{query}&timeout=0")
    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid input."
    assert field in response.json()


@pytest.mark.parametrize("timeout", ["31", "-1", "nan", "inf", "soon"])
def test_bad_poll_timeout_is_400(make_order, customer, timeout):
    order = make_order("paid")
    response = api(customer).get(f"/api/orders/{order.id}/poll/?timeout={timeout}")
    assert response.status_code == 400
    assert "timeout" in response.json()


# --- poll ----------------------------------------------------------------------------------


def test_poll_answers_at_once_when_newer_events_exist(make_order, customer):
    order = make_order("paid")
    started = time.monotonic()
    response = api(customer).get(f"/api/orders/{order.id}/poll/?since_version=1&timeout=10")
    assert time.monotonic() - started < 2
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert [(e["version"], e["status"]) for e in response.json()["events"]] == [(2, 2)]


def test_poll_times_out_empty(make_order, customer):
    order = make_order("paid")
    started = time.monotonic()
    response = api(customer).get(f"/api/orders/{order.id}/poll/?since_version=2&timeout=0.5")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3
    assert response.status_code == 200
    assert response.json() == {"version": 2, "events": [], "has_more": False}


def test_poll_is_woken_by_the_publish_path(make_order, customer, operator):
    order = make_order("paid")
    token = access_token(customer)

    async def body():
        client = AsyncClient()
        started = time.monotonic()
        waiting = asyncio.ensure_future(
            client.get(
                f"/api/orders/{order.id}/poll/?since_version=2&timeout=10", headers={"Authorization": f"Bearer {token}"}
            )
        )
        await asyncio.sleep(0.5)
        if waiting.done():
            return await waiting, 0
        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picking")
        response = await waiting
        return response, time.monotonic() - started

    response, elapsed = async_to_sync(body)()
    assert elapsed < 3
    assert response.status_code == 200
    assert response.json()["version"] == 3
    assert [(e["version"], e["kind"], e["stage"]) for e in response.json()["events"]] == [(3, "stage", "picking")]


def test_poll_documented_in_the_schema(db):
    schema = APIClient().get("/api/schema/?format=json").json()
    for path in ("/api/orders/{order_id}/events/", "/api/orders/{order_id}/poll/"):
        parameters = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert {"since_version", "limit"} <= parameters
    assert "timeout" in {p["name"] for p in schema["paths"]["/api/orders/{order_id}/poll/"]["get"]["parameters"]}
    assert "/api/notifications/{notification_id}/read/" in schema["paths"]


def test_poll_events_carry_changes_that_land_on_the_rest_detail(make_order, customer):
    order = make_order("packed")
    client = api(customer)
    detail = client.get(f"/api/orders/{order.id}/").json()
    events = client.get(f"/api/orders/{order.id}/poll/?since_version=2&timeout=1").json()["events"]
    assert [e["changes"] for e in events[:-1]] == [{"version": 3}, {"version": 4}]
    static = {"id", "items", "total_amount", "create_time", "warehouse", "delivery"}
    assert events[-1]["changes"] == {key: value for key, value in detail.items() if key not in static}


def test_poll_woken_by_a_publish_carries_the_socket_changes(make_order, customer, operator):
    order = make_order("paid")
    token = access_token(customer)

    async def body():
        client = AsyncClient()
        waiting = asyncio.ensure_future(
            client.get(
                f"/api/orders/{order.id}/poll/?since_version=2&timeout=10", headers={"Authorization": f"Bearer {token}"}
            )
        )
        await asyncio.sleep(0.5)
        await database_sync_to_async(services.order_stage_report)(order_id=order.id, operator=operator, stage="picking")
        return await waiting

    [event] = async_to_sync(body)().json()["events"]
    detail = api(customer).get(f"/api/orders/{order.id}/").json()
    assert event["changes"] == {
        "version": 3,
        "stage": "picking",
        "timeline": detail["timeline"],
        "update_time": detail["update_time"],
    }


def test_poll_is_throttled_per_user_with_retry_after(make_order, customer, other_customer, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "poll": "2/min"})
    order = make_order("paid")
    other_order = make_order("paid", owner=other_customer)
    path = f"/api/orders/{order.id}/poll/?since_version=1&timeout=0"

    codes = [api(customer).get(path).status_code for _ in range(2)]
    throttled = api(customer).get(path)
    other_user = api(other_customer).get(f"/api/orders/{other_order.id}/poll/?since_version=1&timeout=0")

    assert codes == [200, 200]
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert throttled.json()["detail"]  # DRF's own message, as on every other throttled endpoint
    assert other_user.status_code == 200
