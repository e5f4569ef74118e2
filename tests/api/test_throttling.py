"""Throttles: per user, per anonymous IP, and the separate ingest scope; 429 with Retry-After."""

import pytest
from rest_framework.throttling import SimpleRateThrottle

from tests.api.conftest import db_counts, track

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(monkeypatch):
    """Set throttle rates for one test (DRF reads them into the class at import time)."""

    def _set(**rates: str) -> None:
        monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **rates})

    return _set


def test_anonymous_callers_are_throttled_per_ip(api, products, rates):
    rates(anon="3/min")

    codes = [api().get("/api/products/", REMOTE_ADDR="10.0.0.1").status_code for _ in range(4)]
    other_ip = api().get("/api/products/", REMOTE_ADDR="10.0.0.2")

    assert codes == [200, 200, 200, 429]
    assert other_ip.status_code == 200


def test_users_are_throttled_per_user_with_retry_after(api, customer, other_customer, rates):
    rates(user="2/min")

    codes = [api(customer).get("/api/orders/").status_code for _ in range(2)]
    throttled = api(customer).get("/api/orders/")

    assert codes == [200, 200]
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert throttled.json()["detail"]
    assert api(other_customer).get("/api/orders/").status_code == 200


def test_ingest_has_its_own_scope(api, rider, make_order, rates):
    make_order("delivering")
    rates(user="1/min", ingest="3/min")
    client = api(rider)

    codes = [
        client.post("/api/rider/locations/", {"points": track(1, prefix=f"p{n}")}, format="json").status_code
        for n in range(3)
    ]
    before = db_counts()
    throttled = client.post("/api/rider/locations/", {"points": track(1, prefix="late")}, format="json")

    # The low per-user rate does not apply to ingest; the ingest rate does.
    assert codes == [200, 200, 200]
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert db_counts() == before
