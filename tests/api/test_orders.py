"""Customer, warehouse and rider endpoints: payloads, bad input (400 and nothing stored),
role-filtered snapshots, stale versions and illegal transitions (409, nothing changed)."""

import json

import pytest

from orders.models import Order, OrderStatus
from tests.api.conftest import db_counts, track
from tests.conftest import HOME_LAT, HOME_LON

pytestmark = pytest.mark.django_db

GOOD_ORDER = {
    "items": [{"sku": "VEG-001", "quantity": 2}, {"sku": "EGG-001", "quantity": 1}],
    "delivery_address": "上海市徐汇区天钥桥路 1 号 3 室",
    "delivery_lat": HOME_LAT,
    "delivery_lon": HOME_LON,
}


def test_products_are_public(api, products):
    response = api().get("/api/products/")

    assert response.status_code == 200
    assert response.json() == [
        {"sku": "EGG-001", "name": "鸡蛋", "price": "11.90", "unit": "份"},
        {"sku": "VEG-001", "name": "上海青", "price": "3.99", "unit": "份"},
    ]


def test_create_order_computes_the_total_and_picks_the_nearest_warehouse(
    api, customer, products, warehouse, other_warehouse
):
    response = api(customer).post("/api/orders/", {**GOOD_ORDER, "total_amount": "0.01"}, format="json")

    assert response.status_code == 201
    body = response.json()
    order = Order.objects.get(pk=body["id"])
    assert order.user == customer
    assert order.warehouse == warehouse
    assert body["status"] == 1
    assert body["status_name"] == "pending_payment"
    assert body["total_amount"] == "19.88"
    assert body["version"] == 1
    assert body["warehouse"] == {"name": "徐汇仓", "lat": 31.188, "lon": 121.437}
    assert body["delivery"] == {"address": GOOD_ORDER["delivery_address"], "lat": HOME_LAT, "lon": HOME_LON}
    assert [(item["sku"], item["quantity"], item["line_total"]) for item in body["items"]] == [
        ("VEG-001", 2, "7.98"),
        ("EGG-001", 1, "11.90"),
    ]
    assert body["rider"] is None
    assert body["rider_position"] is None
    assert "alerts" not in body
    assert [entry["status"] for entry in body["timeline"]] == [1]


BAD_ORDERS = [
    ({**GOOD_ORDER, "items": [{"sku": "NOPE-404", "quantity": 1}]}, "items"),
    ({**GOOD_ORDER, "items": [{"sku": "VEG-001", "quantity": 0}]}, "items"),
    ({**GOOD_ORDER, "items": [{"sku": "VEG-001", "quantity": -3}]}, "items"),
    ({**GOOD_ORDER, "items": [{"sku": "VEG-001", "quantity": 100}]}, "items"),
    ({**GOOD_ORDER, "items": [{"sku": "VEG-001", "quantity": 60}, {"sku": "VEG-001", "quantity": 60}]}, "items"),
    ({**GOOD_ORDER, "items": [{"sku": "VEG-001", "quantity": "two"}]}, "items"),
    ({**GOOD_ORDER, "items": [{"sku": "VEG-001"}]}, "items"),
    ({**GOOD_ORDER, "items": []}, "items"),
    ({**GOOD_ORDER, "items": "VEG-001"}, "items"),
    ({key: value for key, value in GOOD_ORDER.items() if key != "delivery_address"}, "delivery_address"),
    ({**GOOD_ORDER, "delivery_address": "   "}, "delivery_address"),
    ({key: value for key, value in GOOD_ORDER.items() if key != "delivery_lat"}, "delivery_lat"),
    ({**GOOD_ORDER, "delivery_lat": 90.5}, "delivery_lat"),
    ({**GOOD_ORDER, "delivery_lat": -91}, "delivery_lat"),
    ({**GOOD_ORDER, "delivery_lon": 180.01}, "delivery_lon"),
    ({**GOOD_ORDER, "delivery_lon": -181}, "delivery_lon"),
    ({**GOOD_ORDER, "delivery_lat": "NaN"}, "delivery_lat"),
    ({**GOOD_ORDER, "delivery_lat": "31.2"}, "delivery_lat"),
    ({**GOOD_ORDER, "delivery_lon": True}, "delivery_lon"),
    ({**GOOD_ORDER, "delivery_lon": None}, "delivery_lon"),
    ({**GOOD_ORDER, "delivery_lat": 10**400}, "delivery_lat"),
]


@pytest.mark.parametrize(("payload", "field"), BAD_ORDERS)
def test_create_order_refuses_bad_input_and_stores_nothing(api, customer, products, warehouse, payload, field):
    before = db_counts()

    response = api(customer).post("/api/orders/", payload, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert field in response.json()
    assert db_counts() == before


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_create_order_refuses_non_finite_json_tokens(api, customer, products, warehouse, token):
    before = db_counts()
    body = json.dumps(GOOD_ORDER).replace(str(HOME_LAT), token)

    response = api(customer).post("/api/orders/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"]
    assert db_counts() == before


@pytest.mark.parametrize("body", ["[]", "null", '"order"', "{", ""])
def test_create_order_refuses_bodies_of_the_wrong_shape(api, customer, products, warehouse, body):
    before = db_counts()

    response = api(customer).post("/api/orders/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["detail"]
    assert db_counts() == before


def test_order_list_is_paginated(api, customer, make_order):
    orders = [make_order("pending") for _ in range(22)]

    first = api(customer).get("/api/orders/").json()
    second = api(customer).get("/api/orders/", {"page": 2}).json()

    assert first["count"] == 22
    assert len(first["results"]) == 20
    assert first["next"].endswith("/api/orders/?page=2")
    assert len(second["results"]) == 2
    listed = [order["id"] for order in first["results"] + second["results"]]
    assert sorted(listed) == sorted(order.id for order in orders)
    assert api(customer).get("/api/orders/", {"page": 3}).status_code == 404


def _post(api, user, path, body=None):
    return api(user).post(path, body or {}, format="json")


def test_full_lifecycle_answers_each_step_with_the_role_filtered_snapshot(
    api, customer, rider, operator, products, warehouse
):
    created = api(customer).post("/api/orders/", GOOD_ORDER, format="json").json()
    order_id = created["id"]

    paid = _post(api, customer, f"/api/orders/{order_id}/pay/", {"expected_version": 1})
    stages = [
        _post(api, operator, f"/api/warehouse/orders/{order_id}/stage/", {"stage": stage}).json()
        for stage in ("picking", "picked", "packed")
    ]
    dispatched = _post(api, operator, f"/api/warehouse/orders/{order_id}/dispatch/", {"rider": "rita"})
    mine = api(rider).get("/api/rider/orders/").json()["results"]
    _post(api, rider, "/api/rider/locations/", {"points": track(3)})
    as_customer = api(customer).get(f"/api/orders/{order_id}/").json()
    as_rider = api(rider).get(f"/api/orders/{order_id}/").json()
    delivered = _post(api, rider, f"/api/rider/orders/{order_id}/delivered/", {"expected_version": 9})
    after = api(customer).get(f"/api/orders/{order_id}/").json()

    assert paid.status_code == 200
    assert (paid.json()["status"], paid.json()["version"]) == (2, 2)
    assert [(stage["stage"], stage["version"]) for stage in stages] == [("picking", 3), ("picked", 4), ("packed", 5)]
    assert dispatched.status_code == 200
    assert dispatched.json()["status_name"] == "delivering"
    assert dispatched.json()["rider"] == {"username": "rita", "name": "骑手rita", "phone": ""}
    assert [(order["id"], order["delivery"]["address"]) for order in mine] == [
        (order_id, GOOD_ORDER["delivery_address"])
    ]
    assert mine[0]["delivery"]["lat"] == HOME_LAT
    # Customers: display name only, the position coarsened to 4 decimals.
    assert as_customer["rider"] == {"name": "骑手rita"}
    assert as_customer["rider_position"]["lat"] == round(31.188 + 2 * 0.00001, 4)
    assert as_rider["rider_position"]["lat"] == pytest.approx(31.18802)
    assert as_customer["version"] == 9
    assert delivered.status_code == 200
    assert delivered.json()["status_name"] == "completed"
    # After delivery the customer no longer sees where the rider is.
    assert after["rider_position"] is None
    assert [entry["label"] for entry in after["timeline"]] == [
        "待支付",
        "已支付",
        "拣货中",
        "拣货完成",
        "已打包",
        "配送中",
        "已完成",
    ]


def test_dispatch_without_a_rider_picks_the_nearest_available(api, operator, rider, other_rider, make_order):
    order = make_order("packed")

    response = _post(api, operator, f"/api/warehouse/orders/{order.id}/dispatch/")

    assert response.status_code == 200
    assert response.json()["rider"]["username"] == "rita"


def test_only_staff_see_alerts(api, customer, staff, make_order):
    order = make_order("paid")

    assert "alerts" not in api(customer).get(f"/api/orders/{order.id}/").json()
    assert api(staff).get(f"/api/orders/{order.id}/").json()["alerts"] == []


def test_staff_may_cancel_any_order(api, staff, make_order):
    order = make_order("paid")

    response = _post(api, staff, f"/api/orders/{order.id}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == OrderStatus.CANCELLED


@pytest.mark.parametrize(
    ("status", "persona", "path", "body"),
    [
        ("paid", "customer", "/api/orders/{id}/pay/", {}),
        ("cancelled", "customer", "/api/orders/{id}/pay/", {}),
        ("delivering", "customer", "/api/orders/{id}/cancel/", {}),
        ("completed", "customer", "/api/orders/{id}/cancel/", {}),
        ("paid", "rider", "/api/rider/orders/{id}/delivered/", {}),
        ("pending", "operator", "/api/warehouse/orders/{id}/stage/", {"stage": "picking"}),
        ("picked", "operator", "/api/warehouse/orders/{id}/stage/", {"stage": "picking"}),
        ("picked", "operator", "/api/warehouse/orders/{id}/dispatch/", {}),
        ("pending", "customer", "/api/orders/{id}/pay/", {"expected_version": 0}),
        ("paid", "operator", "/api/warehouse/orders/{id}/stage/", {"stage": "picking", "expected_version": 1}),
    ],
)
def test_illegal_transitions_and_stale_versions_are_409_and_change_nothing(
    api, request, make_order, status, persona, path, body
):
    order = make_order(status)
    user = request.getfixturevalue(persona)
    if status == "paid" and persona == "rider":
        # A rider who is not yet assigned cannot even see the order.
        Order.objects.filter(pk=order.id).update(rider=user)
    order.refresh_from_db()
    before = db_counts()

    response = _post(api, user, path.format(id=order.id), body)

    assert response.status_code == 409, response.content
    assert response.json() == {"detail": response.json()["detail"], "version": order.version}
    assert db_counts() == before
    assert Order.objects.get(pk=order.id).version == order.version


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/warehouse/orders/{id}/stage/", {"stage": "shipped"}, "stage"),
        ("/api/warehouse/orders/{id}/stage/", {}, "stage"),
        ("/api/warehouse/orders/{id}/stage/", {"stage": "picking", "expected_version": "x"}, "expected_version"),
        ("/api/warehouse/orders/{id}/dispatch/", {"rider": "nobody"}, "rider"),
        ("/api/warehouse/orders/{id}/dispatch/", {"rider": "alice"}, "rider"),
        ("/api/warehouse/orders/{id}/dispatch/", {"expected_version": -1}, "expected_version"),
    ],
)
def test_warehouse_bad_input_is_400_and_changes_nothing(api, operator, make_order, path, body, field):
    order = make_order("packed" if "dispatch" in path else "paid")
    before = db_counts()

    response = _post(api, operator, path.format(id=order.id), body)

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert db_counts() == before
    assert Order.objects.get(pk=order.id).version == order.version
