"""Property-based fuzz of every REST write endpoint, the order-scoped reads and the login form.

Hypothesis sends hostile bodies (deep nesting, huge strings, NUL, lone
surrogates, wrong types, NaN/Infinity/1e400, huge integers, bytes that are
not JSON or not UTF-8), odd content types and malformed ids in the path.
Every answer is below 500, every refusal under /api/ is JSON with a
`detail`, and a refused request leaves every row as it was. Run against
PostgreSQL too (CI=true): NUL handling differs from SQLite.

Complements test_schemathesis.py, which checks schema-shaped input against
the OpenAPI schema; this sends what no schema describes.
"""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.tokens import RefreshToken

from notifications.models import Notification
from tests.api.conftest import bearer, point, track
from tests.api.fuzzing import (
    EXTREME_NUMBERS,
    FUZZ_SETTINGS,
    data_snapshot,
    hostile_json,
    hostile_text,
    production_recursion_limit,
)
from tests.conftest import PASSWORD
from tracking.models import TrackingEvent
from xiaoxiang.payloads import TEXT_ERROR

pytestmark = pytest.mark.django_db(transaction=True)

CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ]
)
SENT = {"requests": 0, "5xx": 0}


@pytest.fixture(autouse=True, scope="module")
def _report_count():
    yield
    print(f"\nHTTP fuzz: {SENT['requests']} requests, {SENT['5xx']} answered 5xx")  # shown with -s


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # {order} or {notification} is the object the caller may act on
    persona: str
    order_state: str | None = None


WRITE_ENDPOINTS = [
    Endpoint("register", "/api/auth/register/", "anon"),
    Endpoint("token", "/api/auth/token/", "anon"),
    Endpoint("token-refresh", "/api/auth/token/refresh/", "anon"),
    Endpoint("logout", "/api/auth/logout/", "customer"),
    Endpoint("order-create", "/api/orders/", "customer"),
    Endpoint("pay", "/api/orders/{order}/pay/", "customer", "pending"),
    Endpoint("cancel", "/api/orders/{order}/cancel/", "customer", "paid"),
    Endpoint("stage", "/api/warehouse/orders/{order}/stage/", "operator", "paid"),
    Endpoint("dispatch", "/api/warehouse/orders/{order}/dispatch/", "operator", "packed"),
    Endpoint("delivered", "/api/rider/orders/{order}/delivered/", "rider", "delivering"),
    Endpoint("gps-single", "/api/rider/locations/", "rider", "delivering"),
    Endpoint("gps-batch", "/api/rider/locations/", "rider", "delivering"),
    Endpoint("rider-status", "/api/rider/status/", "rider"),
    Endpoint("notification-read", "/api/notifications/{notification}/read/", "customer", "paid"),
]


def _template(endpoint: Endpoint, world: dict[str, Any]) -> Any:
    """A valid body for the endpoint, the start of every mutation."""
    now = timezone.now()
    order = world["orders"].get(endpoint.order_state)
    version = {"expected_version": order.version} if order is not None else {}
    return {
        "register": {"username": "newcomer", "password": "a-long-pass-phrase-1", "email": "new@example.com"},
        "token": {"username": "alice", "password": PASSWORD},
        "token-refresh": {"refresh": world["refresh"]},
        "logout": {"refresh": world["refresh"]},
        "order-create": {
            "items": [{"sku": "VEG-001", "quantity": 2}, {"sku": "EGG-001", "quantity": 1}],
            "delivery_address": "上海市徐汇区天钥桥路 1 号",
            "delivery_lat": 31.2,
            "delivery_lon": 121.45,
        },
        "pay": version,
        "cancel": version,
        "stage": {"stage": "picking", **version},
        "dispatch": {"rider": "rita", **version},
        "delivered": version,
        "gps-single": {"points": [point("fuzz-1", at=now, accuracy=5.0, speed=3.0, heading=90)]},
        "gps-batch": {"points": track(4, start=now - dt.timedelta(seconds=5), prefix="fuzz")},
        "rider-status": {"location": "ok", "battery_level": 0.5, "charging": True},
        "notification-read": {},
    }[endpoint.name]


@pytest.fixture
def world(make_order, customer, rider, operator, staff, monkeypatch) -> dict[str, Any]:
    # The fuzz sends hundreds of requests a minute; throttling is tested in test_throttling.py.
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", dict.fromkeys(SimpleRateThrottle.THROTTLE_RATES, "1000000/min")
    )
    orders = {state: make_order(state) for state in ("pending", "paid", "packed")}
    orders["delivering"] = make_order("delivering")
    return {
        "orders": orders,
        "notification": Notification.objects.filter(user=customer).order_by("pk").first(),
        "refresh": str(RefreshToken.for_user(customer)),
        "auth": {
            "anon": {},
            **{
                name: {"HTTP_AUTHORIZATION": bearer(user)}
                for name, user in [("customer", customer), ("rider", rider), ("operator", operator), ("staff", staff)]
            },
        },
        "customer": customer,
    }


def _quoted(value: str) -> str:
    # As a client library would send it: UTF-8 percent-escapes, a lone surrogate as its (invalid) UTF-8 bytes.
    return quote(value, safe="", errors="surrogatepass")


malformed_order_ids = st.one_of(
    hostile_text,
    st.text(alphabet="0123456789abcdefABCDEF", min_size=31, max_size=33),
    st.sampled_from(["%00", "0" * 31 + "\x00", "0" * 31 + "G", "x" * 300, "..", "😀" * 8, "0" * 32 + "/"]),
)
malformed_notification_ids = st.one_of(
    st.integers(min_value=0, max_value=10**40).map(str), hostile_text, st.sampled_from(["-1", "1.5", "1e3", "0x10"])
)


def _path(endpoint: Endpoint, world: dict[str, Any], data: st.DataObject) -> str:
    """The endpoint's path on its real object, or (one draw in four) on a malformed id."""
    malformed = data.draw(st.integers(0, 3), label="malformed id?") == 3
    if "{order}" in endpoint.path:
        order_id = data.draw(malformed_order_ids) if malformed else world["orders"][endpoint.order_state].id
        return endpoint.path.format(order=_quoted(order_id))
    if "{notification}" in endpoint.path:
        notification_id = data.draw(malformed_notification_ids) if malformed else str(world["notification"].pk)
        return endpoint.path.format(notification=_quoted(notification_id))
    return endpoint.path


def _checked(response, before: dict[str, list], *, api: bool = True) -> None:
    """No 5xx; a refusal is JSON with a `detail` (under /api/) and changed no row."""
    SENT["requests"] += 1
    if response.status_code >= 500:
        SENT["5xx"] += 1
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        if api:
            assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
            assert response.json()["detail"]
        assert data_snapshot() == before


@pytest.mark.parametrize("endpoint", WRITE_ENDPOINTS, ids=lambda endpoint: endpoint.name)
@FUZZ_SETTINGS
@given(data=st.data())
def test_hostile_bodies_never_get_a_5xx_or_change_data_when_refused(endpoint, world, data):
    path = _path(endpoint, world, data)
    body = data.draw(hostile_json(_template(endpoint, world)), label="body")
    content_type = data.draw(CONTENT_TYPES, label="content type")
    before = data_snapshot()
    events_before = TrackingEvent.objects.count()

    with production_recursion_limit():
        response = Client().generic("POST", path, body, content_type=content_type, **world["auth"][endpoint.persona])

    _checked(response, before)
    if endpoint.name.startswith("gps") and response.status_code == 200:
        # Accepted points are stored, and nothing else is.
        assert TrackingEvent.objects.count() - events_before <= response.json()["accepted"]


hostile_query_values = st.one_of(hostile_text, st.sampled_from(EXTREME_NUMBERS), st.integers().map(str), st.just("0"))
ORDER_READS = [
    "/api/orders/{order}/",
    "/api/orders/{order}/events/",
    "/api/orders/{order}/poll/",
    "/api/orders/{order}/trajectory/",
    "/orders/{order}/",
]


@FUZZ_SETTINGS
@given(data=st.data())
def test_order_scoped_reads_refuse_malformed_ids_and_parameters_without_a_5xx(world, settings, data):
    # A poll that is allowed to wait returns at once: every timeout over this is a 400.
    settings.POLL_MAX_TIMEOUT_SECONDS = 0.0
    route = data.draw(st.sampled_from(ORDER_READS), label="route")
    malformed = data.draw(st.booleans(), label="malformed id?")
    order_id = data.draw(malformed_order_ids) if malformed else world["orders"]["delivering"].id
    names = data.draw(st.lists(st.sampled_from(["since_version", "limit", "timeout", "page"]), unique=True))
    query = "&".join(f"{name}={_quoted(data.draw(hostile_query_values, label=name))}" for name in names)
    client = Client()
    client.force_login(world["customer"])  # the page takes the session, the API the token
    before = data_snapshot()

    response = client.get(
        route.format(order=_quoted(order_id)) + (f"?{query}" if query else ""), **world["auth"]["customer"]
    )

    _checked(response, before, api=route.startswith("/api/"))
    if malformed:
        assert response.status_code == 404


@FUZZ_SETTINGS
@given(username=hostile_text, password=st.one_of(hostile_text, st.just(PASSWORD)))
def test_the_login_form_refuses_hostile_text_without_a_5xx(world, username, password):
    before = data_snapshot()
    body = f"username={_quoted(username)}&password={_quoted(password)}"

    response = Client().generic("POST", "/accounts/login/", body, content_type="application/x-www-form-urlencoded")

    SENT["requests"] += 1
    assert response.status_code < 500
    if response.status_code != 302:  # a successful login records last_login
        assert data_snapshot() == before


# --- The campaign's findings, exactly (issue 12) --------------------------------------

BODY_READERS = [endpoint for endpoint in WRITE_ENDPOINTS if endpoint.name != "notification-read"]


def test_1500_deep_arrays_are_a_400_on_every_json_write_endpoint(world):
    before = data_snapshot()
    body = "[" * 1500 + "]" * 1500  # 3 kB

    with production_recursion_limit():
        answers = {
            endpoint.name: Client().post(
                _path_on_real_object(endpoint, world), body, "application/json", **world["auth"][endpoint.persona]
            )
            for endpoint in BODY_READERS
        }

    assert {name: response.status_code for name, response in answers.items()} == dict.fromkeys(answers, 400)
    assert all(response.json() == {"detail": "JSON nested deeper than 32 levels."} for response in answers.values())
    assert data_snapshot() == before


def _path_on_real_object(endpoint: Endpoint, world: dict[str, Any]) -> str:
    order = world["orders"].get(endpoint.order_state)
    return endpoint.path.format(order=order.id if order else "", notification=world["notification"].pk)


def test_the_depth_limit_is_32_levels(world):
    client = Client()
    auth = world["auth"]["rider"]
    inside = {"points": [{"client_id": "deep", "lat": 31.2, "lon": 121.4, "recorded_at": "x", "extra": None}]}
    # 3 levels of body, then 29 more: the limit itself parses and reaches validation.
    at_limit = json.dumps(inside).replace("null", "[" * 29 + "]" * 29)
    over = json.dumps(inside).replace("null", "[" * 30 + "]" * 30)

    assert client.post("/api/rider/locations/", at_limit, "application/json", **auth).json()["rejected"]
    assert client.post("/api/rider/locations/", over, "application/json", **auth).json() == {
        "detail": "JSON nested deeper than 32 levels."
    }


def test_a_lone_surrogate_stage_is_a_400_that_does_not_echo_it(world):
    order = world["orders"]["paid"]
    before = data_snapshot()

    path = f"/api/warehouse/orders/{order.id}/stage/"

    response = Client().post(path, '{"stage": "\\ud800"}', "application/json", **world["auth"]["operator"])

    assert response.status_code == 400
    assert response.json() == {"detail": TEXT_ERROR}
    assert data_snapshot() == before


@pytest.mark.parametrize("character", ["\x00", "\ud800"])
def test_nul_and_lone_surrogates_anywhere_in_a_body_are_a_400(world, character):
    body = {"items": [{"sku": f"VEG{character}001", "quantity": 1}], "delivery_address": "上海", "delivery_lat": 31.2}
    before = data_snapshot()

    response = Client().post("/api/orders/", json.dumps(body), "application/json", **world["auth"]["customer"])
    as_key = Client().post("/api/orders/", json.dumps({character: 1}), "application/json", **world["auth"]["customer"])

    assert (response.status_code, as_key.status_code) == (400, 400)
    assert response.json() == as_key.json() == {"detail": TEXT_ERROR}
    assert data_snapshot() == before


ORDER_WRITES = [endpoint.path for endpoint in WRITE_ENDPOINTS if "{order}" in endpoint.path]


def test_a_nul_in_the_order_id_is_a_404_on_every_order_scoped_route(world):
    client = Client()
    client.force_login(world["customer"])
    before = data_snapshot()

    answers = {route: client.get(route.format(order="%00")) for route in ORDER_READS}
    answers |= {route: client.post(route.format(order="%00"), {}) for route in ORDER_WRITES}

    assert {route: response.status_code for route, response in answers.items()} == dict.fromkeys(answers, 404)
    assert all(response.json() == {"detail": "Not found."} for route, response in answers.items() if "/api/" in route)
    assert data_snapshot() == before


def test_a_body_over_the_limit_is_a_413_with_a_detail(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"location": "ok", "padding": "x" * 1000})

    response = Client().post("/api/rider/status/", body, "application/json", **world["auth"]["rider"])

    assert response.status_code == 413
    assert response.json() == {"detail": "Request body larger than 1000 bytes."}
