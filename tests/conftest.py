"""Personas, factories and the rules for tests that need real services.

Tests marked `postgres` or `redis` need those engines (DATABASE_URL,
REDIS_URL). Under CI=true a missing engine fails the test; elsewhere it
skips with the reason.
"""

import os
import socket
from decimal import Decimal
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection

from orders import services
from orders.demo import ROLE_GROUPS
from orders.models import Order, Product, Warehouse, WarehouseOperator
from tracking.models import Rider
from xiaoxiang.geo import geohash_encode

IN_CI = os.environ.get("CI", "").lower() in {"1", "true"}
PASSWORD = "correct-horse-battery-staple"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
WAREHOUSE_LAT, WAREHOUSE_LON = 31.188, 121.437
HOME_LAT, HOME_LON = 31.2000, 121.4500


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _unavailable("this test needs PostgreSQL: set DATABASE_URL=postgres://...")
    if item.get_closest_marker("redis"):
        if not settings.REDIS_URL:
            _unavailable("this test needs Redis: set REDIS_URL=redis://...")
        elif not _reachable(settings.REDIS_URL, 6379):
            _unavailable(f"Redis at {settings.REDIS_URL} is unreachable")


# ETA and alert jobs stay off unless a test turns them on (tests/jobs): their
# `eta`/`alert` events would shift the versions other tests assert exactly.
# The environment reaches the servers the tests start (tests/live.py).
os.environ["TRACKING_JOBS_ENABLED"] = "false"


@pytest.fixture(autouse=True, scope="session")
def _connections_not_kept():
    # Persistent connections (the production default) would keep the thread
    # pool's sessions on the test database open past the run, and its
    # teardown could not drop it. (Servers the tests start keep theirs.)
    from django.db import connections

    for alias in connections:
        connections[alias].settings_dict["CONN_MAX_AGE"] = 0
    yield


@pytest.fixture(autouse=True)
def _jobs_off(settings):
    settings.TRACKING_JOBS_ENABLED = False


@pytest.fixture(autouse=True)
def _clear_cache(settings):
    from django.core.cache import cache

    cache.clear()
    _blocklist_empty(settings)
    yield


def _blocklist_empty(settings) -> None:
    """Each test starts with an empty blocklist copy, freshly "loaded", that reloads only when invalidated.

    So requests cost no blocklist query (exact query counts, tests without a
    database) and no test sees another's rolled-back entries; tests that block
    an address invalidate the copy (tests/access/conftest.py).
    """
    import time

    from access.blocklist import Blocklist, blocklist

    settings.ACCESS_BLOCKLIST_REFRESH_SECONDS = 3600
    blocklist.entries = Blocklist().entries
    blocklist.loaded_at = time.monotonic()


@pytest.fixture
def groups(db):
    return {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_GROUPS}


def make_user(username: str, group: Group | None = None, **fields) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, email=f"{username}@example.com", **fields)
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def warehouse(db) -> Warehouse:
    return Warehouse.objects.create(
        code="WH-1", name="徐汇仓", latitude=Decimal(str(WAREHOUSE_LAT)), longitude=Decimal(str(WAREHOUSE_LON))
    )


@pytest.fixture
def other_warehouse(db) -> Warehouse:
    return Warehouse.objects.create(
        code="WH-2", name="浦东仓", latitude=Decimal("31.230"), longitude=Decimal("121.540")
    )


@pytest.fixture
def products(db) -> dict[str, Product]:
    return {
        "VEG-001": Product.objects.create(sku="VEG-001", name="上海青", price=Decimal("3.99")),
        "EGG-001": Product.objects.create(sku="EGG-001", name="鸡蛋", price=Decimal("11.90")),
    }


@pytest.fixture
def customer(groups) -> User:
    return make_user("alice", groups["customer"])


@pytest.fixture
def other_customer(groups) -> User:
    return make_user("bob", groups["customer"])


def make_rider(username: str, groups, lat: float = WAREHOUSE_LAT + 0.001, lon: float = WAREHOUSE_LON) -> User:
    user = make_user(username, groups["rider"])
    Rider.objects.create(
        user=user, display_name=f"骑手{username}", last_lat=lat, last_lon=lon, geohash=geohash_encode(lat, lon)
    )
    return user


@pytest.fixture
def rider(groups, warehouse) -> User:
    return make_rider("rita", groups)


@pytest.fixture
def other_rider(groups, warehouse) -> User:
    return make_rider("ravi", groups, lat=31.30, lon=121.60)


@pytest.fixture
def operator(groups, warehouse) -> User:
    user = make_user("wally", groups["warehouse"])
    WarehouseOperator.objects.create(user=user, warehouse=warehouse)
    return user


@pytest.fixture
def other_operator(groups, other_warehouse) -> User:
    user = make_user("wendy", groups["warehouse"])
    WarehouseOperator.objects.create(user=user, warehouse=other_warehouse)
    return user


@pytest.fixture
def staff(db) -> User:
    return make_user("sam", is_staff=True)


def order_for(
    customer: User, *, status: str = "pending", rider: User | None = None, operator: User | None = None
) -> Order:
    """An order driven through the real services up to `status`:
    pending, paid, picking, picked, packed, delivering, completed, cancelled."""
    order = services.order_create(
        customer=customer,
        items=[{"sku": "VEG-001", "quantity": 2}, {"sku": "EGG-001", "quantity": 1}],
        delivery_address="上海市徐汇区天钥桥路 1 号 3 室",
        delivery_lat=HOME_LAT,
        delivery_lon=HOME_LON,
    )
    steps = ["pending", "paid", "picking", "picked", "packed", "delivering", "completed"]
    if status == "cancelled":
        return services.order_cancel(order_id=order.id, actor=customer)
    target = steps.index(status)
    if target >= 1:
        services.order_pay(order_id=order.id, customer=customer)
    for stage in ("picking", "picked", "packed")[: max(0, target - 1)]:
        services.order_stage_report(order_id=order.id, operator=operator, stage=stage)
    if target >= 5:
        services.order_dispatch(order_id=order.id, operator=operator, rider_username=rider.username)
    if target >= 6:
        services.order_mark_delivered(order_id=order.id, rider=rider)
    return Order.objects.get(pk=order.id)


@pytest.fixture
def make_order(warehouse, products, customer, rider, operator):
    def _make(status: str = "pending", owner: User | None = None, assigned: User | None = None) -> Order:
        return order_for(owner or customer, status=status, rider=assigned or rider, operator=operator)

    return _make


def pytest_configure(config: pytest.Config) -> None:
    # Fast hashing: the suite creates many users; production keeps PBKDF2.
    settings.PASSWORD_HASHERS = FAST_HASHERS


from tests.live import daphne_server  # noqa: E402, F401  (fixture)
