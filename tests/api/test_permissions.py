"""The role × endpoint matrix: 401 without a token, 403 for a role that may never use an
endpoint, 404 for an order the caller may not see, and nothing changes on any refusal."""

import pytest

from orders.models import Order
from tests.api.conftest import db_counts, track

pytestmark = pytest.mark.django_db

PERSONAS = ["anon", "customer", "other_customer", "rider", "other_rider", "operator", "other_operator", "staff"]


@pytest.fixture
def everyone(request, customer, other_customer, rider, other_rider, operator, other_operator, staff):
    return {"anon": None, **{name: request.getfixturevalue(name) for name in PERSONAS[1:]}}


READS = {
    # path template -> expected status per persona
    "/api/orders/{id}/": dict(zip(PERSONAS, [401, 200, 404, 200, 404, 200, 404, 200], strict=True)),
    "/api/orders/{id}/trajectory/": dict(zip(PERSONAS, [401, 200, 404, 200, 404, 200, 404, 200], strict=True)),
    "/api/orders/": dict(zip(PERSONAS, [401, 200, 200, 200, 200, 200, 200, 200], strict=True)),
    "/api/warehouse/orders/": dict(zip(PERSONAS, [401, 403, 403, 403, 403, 200, 200, 403], strict=True)),
    "/api/rider/orders/": dict(zip(PERSONAS, [401, 403, 403, 200, 200, 403, 403, 403], strict=True)),
    "/api/products/": dict.fromkeys(PERSONAS, 200),
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("path", list(READS))
def test_reads(api, everyone, make_order, path, persona):
    order = make_order("delivering")

    response = api(everyone[persona]).get(path.format(id=order.id))

    assert response.status_code == READS[path][persona], response.content
    if response.status_code >= 400:
        assert response.json()["detail"]


# (path template, order status needed, body, expected status per persona)
WRITES = [
    ("/api/orders/{id}/pay/", "pending", {}, [401, 200, 404, 403, 403, 403, 403, 403]),
    ("/api/orders/{id}/cancel/", "paid", {}, [401, 200, 404, 403, 403, 403, 403, 200]),
    ("/api/warehouse/orders/{id}/stage/", "paid", {"stage": "picking"}, [401, 403, 403, 403, 403, 200, 404, 403]),
    ("/api/warehouse/orders/{id}/dispatch/", "packed", {}, [401, 403, 403, 403, 403, 200, 404, 403]),
    ("/api/rider/orders/{id}/delivered/", "delivering", {}, [401, 403, 403, 200, 404, 403, 403, 403]),
]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("path", "status", "body", "expected"), WRITES, ids=[write[0] for write in WRITES])
def test_transitions(api, everyone, make_order, path, status, body, expected, persona):
    order = make_order(status)
    before = db_counts()

    response = api(everyone[persona]).post(path.format(id=order.id), body, format="json")

    code = dict(zip(PERSONAS, expected, strict=True))[persona]
    assert response.status_code == code, response.content
    if code == 200:
        assert response.json()["version"] == order.version + 1
    else:
        assert response.json()["detail"]
        assert "version" not in response.json()  # a stranger never learns the version
        assert db_counts() == before
        assert Order.objects.get(pk=order.id).version == order.version


UNKNOWN = "0" * 32
# Every (method, path, persona) whose role may use the endpoint: an unknown order is 404, like a hidden one.
ALLOWED_ON_UNKNOWN = [
    *[("get", "/api/orders/{id}/", persona) for persona in PERSONAS[1:]],
    *[("get", "/api/orders/{id}/trajectory/", persona) for persona in PERSONAS[1:]],
    ("post", "/api/orders/{id}/pay/", "customer"),
    ("post", "/api/orders/{id}/cancel/", "customer"),
    ("post", "/api/orders/{id}/cancel/", "staff"),
    ("post", "/api/warehouse/orders/{id}/stage/", "operator"),
    ("post", "/api/warehouse/orders/{id}/dispatch/", "operator"),
    ("post", "/api/rider/orders/{id}/delivered/", "rider"),
]


@pytest.mark.parametrize(("method", "path", "persona"), ALLOWED_ON_UNKNOWN)
def test_unknown_order_is_404(api, everyone, method, path, persona):
    client = api(everyone[persona])

    url = path.format(id=UNKNOWN)
    response = client.get(url) if method == "get" else client.post(url, {"stage": "picking"}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": response.json()["detail"]}


@pytest.mark.parametrize("order_id", ["%00", "abc", "0" * 31 + "G", "x" * 300, "%F0%9F%98%80"])
def test_malformed_order_ids_are_404(api, customer, staff, order_id):
    assert api(customer).get(f"/api/orders/{order_id}/").status_code == 404
    assert api(staff).post(f"/api/orders/{order_id}/cancel/", {}, format="json").status_code == 404
    assert api(customer).get(f"/api/orders/{order_id}/trajectory/").status_code == 404


@pytest.mark.parametrize(
    ("persona", "expected"), [("anon", 401), ("customer", 403), ("operator", 403), ("staff", 403), ("rider", 200)]
)
def test_location_ingest_is_for_riders_only(api, everyone, make_order, persona, expected):
    make_order("delivering")
    before = db_counts()

    response = api(everyone[persona]).post("/api/rider/locations/", {"points": track(2)}, format="json")

    assert response.status_code == expected
    if expected != 200:
        assert db_counts() == before


@pytest.mark.parametrize(("persona", "expected"), [("anon", 401), ("rider", 403), ("operator", 403), ("staff", 403)])
def test_only_customers_place_orders(api, everyone, products, warehouse, persona, expected):
    before = db_counts()
    body = {
        "items": [{"sku": "VEG-001", "quantity": 1}],
        "delivery_address": "上海市徐汇区",
        "delivery_lat": 31.2,
        "delivery_lon": 121.45,
    }

    response = api(everyone[persona]).post("/api/orders/", body, format="json")

    assert response.status_code == expected
    assert db_counts() == before


def test_lists_show_only_visible_orders(api, everyone, make_order, customer, other_customer):
    mine = make_order("delivering")
    theirs = make_order("paid", owner=other_customer)

    def ids(persona: str, path: str = "/api/orders/") -> set[str]:
        return {order["id"] for order in api(everyone[persona]).get(path).json()["results"]}

    assert ids("customer") == {mine.id}
    assert ids("other_customer") == {theirs.id}
    assert ids("staff") == {mine.id, theirs.id}
    assert ids("rider") == {mine.id}
    assert ids("other_rider") == set()
    assert ids("operator") == {mine.id, theirs.id}
    assert ids("other_operator") == set()
    assert ids("operator", "/api/warehouse/orders/") == {theirs.id}
    assert ids("other_operator", "/api/warehouse/orders/") == set()
    assert ids("rider", "/api/rider/orders/") == {mine.id}
    assert ids("other_rider", "/api/rider/orders/") == set()
