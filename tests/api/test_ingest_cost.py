"""What one GPS POST costs: its SQL statements, the user and role in one query, and
the duplicate rule of the one-statement insert (issue 10)."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import Order
from tests.api.conftest import db_counts, track
from tests.conftest import make_user
from tracking.models import EventKind, TrackingEvent

pytestmark = pytest.mark.django_db

URL = "/api/rider/locations/"


def _statements(client, body) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    return response.json(), [query["sql"] for query in queries.captured_queries]


@pytest.mark.postgres
def test_a_live_point_is_five_statements_on_postgresql(api, rider, make_order):
    order = make_order("delivering")
    client = api(rider)
    client.post(URL, {"points": track(1, prefix="warm")}, format="json")

    body, statements = _statements(client, {"points": track(1, prefix="live")})

    assert body == {"accepted": 1, "duplicates": 0, "rejected": []}
    # The test's transaction turns the service's BEGIN/COMMIT into a savepoint.
    kinds = [sql.split()[0] for sql in statements if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert kinds == ["SELECT", "SELECT", "SELECT", "WITH", "UPDATE"], statements
    assert "role_group" in statements[0]  # the user and their role
    assert "FOR UPDATE" in statements[2] and '"riders"' in statements[2]  # rider row first ...
    assert "FOR UPDATE" in statements[3] and '"orders"' in statements[3]  # ... then the orders by id
    assert Order.objects.get(pk=order.pk).version == order.version + 2


def test_the_bearer_user_and_their_role_cost_one_query(api, rider, make_order):
    make_order("delivering")

    _, statements = _statements(api(rider), {"points": track(1)})

    assert [sql for sql in statements if "auth_" in sql] == [statements[0]]
    assert "auth_user_groups" in statements[0]


@pytest.mark.parametrize(
    ("memberships", "expected"),
    [
        (["rider"], 200),
        (["customer", "rider"], 200),  # rider outranks customer
        (["warehouse", "rider"], 403),  # warehouse outranks rider
        ([], 403),
    ],
)
def test_the_role_loaded_with_the_token_follows_the_group_ranking(api, groups, warehouse, memberships, expected):
    user = make_user("multi")
    user.groups.add(*(groups[name] for name in memberships))
    before = db_counts()

    response = api(user).post(URL, {"points": track(1)}, format="json")

    assert response.status_code == expected
    if expected == 403:
        assert response.json()["detail"] == "Your role may not use this endpoint."
        assert db_counts() == before


def test_a_deactivated_rider_is_401_and_stores_nothing(api, rider, make_order):
    make_order("delivering")
    client = api(rider)
    rider.is_active = False
    rider.save()
    before = db_counts()

    response = client.post(URL, {"points": track(1)}, format="json")

    assert response.status_code == 401
    assert db_counts() == before


def test_a_point_stored_on_one_order_is_a_duplicate_on_the_riders_other_order(api, rider, make_order, other_customer):
    first = make_order("delivering")
    # Newer than both orders, so each point could go to either.
    points = track(2, start=timezone.now() + dt.timedelta(seconds=60))
    client = api(rider)
    client.post(URL, {"points": points}, format="json")
    second = make_order("delivering", owner=other_customer)
    second_version = Order.objects.get(pk=second.pk).version

    again = client.post(
        URL,
        {"points": [*points, *track(1, start=timezone.now() + dt.timedelta(seconds=90), prefix="new")]},
        format="json",
    )

    assert again.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    locations = TrackingEvent.objects.filter(kind=EventKind.LOCATION)
    assert sorted(locations.filter(order=first).values_list("client_id", flat=True)) == ["new-0", "p-0", "p-1"]
    assert list(locations.filter(order=second).values_list("client_id", "version")) == [("new-0", second_version + 1)]
    assert Order.objects.get(pk=second.pk).version == second_version + 1


def test_a_batch_stores_exact_coordinates_and_device_order_versions(api, rider, make_order):
    order = make_order("delivering")
    points = track(3)
    points[0]["lat"], points[0]["lon"] = 31.1234565, 121.4567895  # rounding at the 6th decimal
    points[1].update(accuracy=3.5, speed=0.0, heading=359.5)

    response = api(rider).post(URL, {"points": list(reversed(points))}, format="json")

    assert response.json()["accepted"] == 3
    stored = list(TrackingEvent.objects.filter(order=order, kind=EventKind.LOCATION).order_by("version"))
    assert [event.client_id for event in stored] == ["p-0", "p-1", "p-2"]
    assert [str(stored[0].latitude), str(stored[0].longitude)] == [f"{31.1234565:.6f}", f"{121.4567895:.6f}"]
    assert (stored[1].accuracy, stored[1].speed, stored[1].heading) == (3.5, 0.0, 359.5)
    assert (stored[2].accuracy, stored[2].speed, stored[2].heading) == (None, None, None)
    assert all(event.operator_id == str(rider.pk) and event.data == {} and event.stage == "" for event in stored)
