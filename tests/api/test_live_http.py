"""Every endpoint of issue 3 over real HTTP against Daphne: a customer signs up and orders,
the warehouse picks and dispatches, the rider reports GPS and delivers."""

import json

import httpx
import pytest

from tests.api.conftest import track
from tests.conftest import PASSWORD


def _login(base_url: str, username: str, password: str = PASSWORD) -> tuple[httpx.Client, dict]:
    tokens = httpx.post(f"{base_url}/api/auth/token/", json={"username": username, "password": password}).json()
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {tokens['access']}"}, timeout=30)
    return client, tokens


@pytest.mark.django_db(transaction=True)
def test_an_order_from_sign_up_to_delivery_over_http(daphne_server, rider, operator, products, warehouse):
    base = daphne_server.url
    signup = httpx.post(
        f"{base}/api/auth/register/", json={"username": "dora", "password": "a-long-unusual-passphrase"}
    )
    customer, customer_tokens = _login(base, "dora", "a-long-unusual-passphrase")
    warehouse_client, _ = _login(base, "wally")
    rider_client, _ = _login(base, "rita")

    catalogue = httpx.get(f"{base}/api/products/").json()
    created = customer.post(
        "/api/orders/",
        json={
            "items": [{"sku": catalogue[0]["sku"], "quantity": 3}],
            "delivery_address": "上海市徐汇区",
            "delivery_lat": 31.2,
            "delivery_lon": 121.45,
        },
    )
    order_id = created.json()["id"]
    paid = customer.post(f"/api/orders/{order_id}/pay/", json={"expected_version": 1})
    queue = warehouse_client.get("/api/warehouse/orders/").json()
    for stage in ("picking", "picked", "packed"):
        assert warehouse_client.post(f"/api/warehouse/orders/{order_id}/stage/", json={"stage": stage}).is_success
    dispatched = warehouse_client.post(f"/api/warehouse/orders/{order_id}/dispatch/", json={"rider": "rita"})
    assignments = rider_client.get("/api/rider/orders/").json()
    points = track(4)
    points[2]["lat"] = "__NAN__"
    body = json.dumps({"points": points}).replace('"__NAN__"', "NaN")
    ingest = rider_client.post("/api/rider/locations/", content=body, headers={"Content-Type": "application/json"})
    retry = rider_client.post("/api/rider/locations/", content=body, headers={"Content-Type": "application/json"})
    watching = customer.get(f"/api/orders/{order_id}/").json()
    trajectory = customer.get(f"/api/orders/{order_id}/trajectory/")
    delivered = rider_client.post(f"/api/rider/orders/{order_id}/delivered/", json={})
    history = customer.get("/api/orders/").json()
    rotated = httpx.post(f"{base}/api/auth/token/refresh/", json={"refresh": customer_tokens["refresh"]})
    logout = customer.post("/api/auth/logout/", json={"refresh": rotated.json()["refresh"]})
    after_logout = httpx.post(f"{base}/api/auth/token/refresh/", json={"refresh": rotated.json()["refresh"]})

    assert signup.status_code == 201
    assert created.status_code == 201
    assert created.json()["total_amount"] == "35.70"
    assert paid.json()["status_name"] == "paid"
    assert [order["id"] for order in queue["results"]] == [order_id]
    assert dispatched.json()["status_name"] == "delivering"
    assert [(order["id"], order["delivery"]["lat"]) for order in assignments["results"]] == [(order_id, 31.2)]
    assert ingest.json() == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": [{"index": 2, "errors": {"lat": ["Must be a finite number."]}}],
    }
    assert retry.json()["duplicates"] == 3
    assert watching["rider"] == {"name": "骑手rita"}
    assert watching["rider_position"]["lat"] == round(points[3]["lat"], 4)
    assert trajectory.headers["content-type"] == "application/geo+json"
    assert len(trajectory.json()["features"][0]["geometry"]["coordinates"]) == 3
    assert delivered.json()["status_name"] == "completed"
    assert history["results"][0]["status_name"] == "completed"
    assert rotated.status_code == 200
    assert logout.status_code == 200
    assert after_logout.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_errors_over_http_are_json_with_detail(daphne_server, customer, other_customer, make_order):
    order = make_order("pending", owner=other_customer)
    client, _ = _login(daphne_server.url, "alice")

    hidden = client.get(f"/api/orders/{order.id}/")
    forbidden = client.get("/api/warehouse/orders/")
    anonymous = httpx.get(f"{daphne_server.url}/api/orders/")
    bad = client.post("/api/orders/", json={"items": []})
    stale = httpx.post(
        f"{daphne_server.url}/api/orders/{order.id}/pay/",
        json={"expected_version": 99},
        headers={"Authorization": _login(daphne_server.url, "bob")[1]["access"].join(["Bearer ", ""])},
    )

    assert (hidden.status_code, hidden.json()) == (404, {"detail": hidden.json()["detail"]})
    assert forbidden.status_code == 403
    assert anonymous.status_code == 401
    assert bad.status_code == 400
    assert {"detail", "items", "delivery_address"} <= set(bad.json())
    assert stale.status_code == 409
    assert stale.json()["version"] == 1


@pytest.mark.django_db(transaction=True)
def test_schema_and_docs_are_served(daphne_server):
    schema = httpx.get(f"{daphne_server.url}/api/schema/")
    docs = httpx.get(f"{daphne_server.url}/api/docs/")

    assert schema.status_code == 200
    assert "/api/rider/locations/" in schema.text
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
