"""Automatic temporary bans: too many 401/429 answers to one address in a window block it for a while."""

import datetime as dt
import logging

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone
from rest_framework.throttling import SimpleRateThrottle

from access.models import AUTO_BAN_REASON, BlockedNetwork
from tests.access.conftest import ATTACKER, BYSTANDER
from xiaoxiang import cache as cache_module
from xiaoxiang.cache import RedisCache

# Committed like a real request (no test transaction), so the ban's after-commit refresh runs at once.
pytestmark = pytest.mark.django_db(transaction=True)

BAD_TOKEN = {"HTTP_AUTHORIZATION": "Bearer not-a-token"}


@pytest.fixture
def bans(settings):
    settings.ACCESS_AUTO_BAN_THRESHOLD = 3
    settings.ACCESS_AUTO_BAN_WINDOW_SECONDS = 60
    settings.ACCESS_AUTO_BAN_SECONDS = 120
    return settings


def test_too_many_401s_ban_the_address_for_a_while(bans, client_from, products):
    attacker = client_from(ATTACKER)

    codes = [attacker.get("/api/orders/", **BAD_TOKEN).status_code for _ in range(3)]
    banned = attacker.get("/api/products/")

    assert codes == [401, 401, 401]
    assert banned.status_code == 403
    assert 110 <= int(banned["Retry-After"]) <= 120
    ban = BlockedNetwork.objects.get()
    assert (ban.network, ban.reason) == (f"{ATTACKER}/32", AUTO_BAN_REASON)
    assert abs((ban.expires_at - timezone.now()) - dt.timedelta(seconds=120)) < dt.timedelta(seconds=10)
    assert client_from(BYSTANDER).get("/api/products/").status_code == 200


def test_429s_count_too(bans, client_from, products, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "anon": "1/min"})
    attacker = client_from(ATTACKER)

    codes = [attacker.get("/api/products/").status_code for _ in range(5)]

    assert codes == [200, 429, 429, 429, 403]
    assert BlockedNetwork.objects.filter(reason=AUTO_BAN_REASON).count() == 1


def test_fewer_strikes_than_the_threshold_ban_nobody(bans, client_from, products):
    codes = [client_from(ATTACKER).get("/api/orders/", **BAD_TOKEN).status_code for _ in range(2)]

    assert codes == [401, 401]
    assert client_from(ATTACKER).get("/api/products/").status_code == 200
    assert not BlockedNetwork.objects.exists()


def test_a_trusted_proxy_is_never_banned(bans, client_from, products):
    # Banning nginx's own address would block every client behind it.
    codes = [client_from("127.0.0.1").get("/api/orders/", **BAD_TOKEN).status_code for _ in range(5)]

    assert codes == [401] * 5
    assert not BlockedNetwork.objects.exists()


def test_a_threshold_of_zero_turns_bans_off(bans, client_from):
    bans.ACCESS_AUTO_BAN_THRESHOLD = 0

    codes = [client_from(ATTACKER).get("/api/orders/", **BAD_TOKEN).status_code for _ in range(5)]

    assert codes == [401] * 5
    assert not BlockedNetwork.objects.exists()


@pytest.mark.redis
def test_strikes_are_counted_in_redis_so_every_process_adds_to_one_count(bans, client_from, products):
    bans.ACCESS_AUTO_BAN_THRESHOLD = 4
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    attacker = client_from(ATTACKER)

    first = [attacker.get("/api/orders/", **BAD_TOKEN).status_code for _ in range(2)]
    (key,) = list(store.scan_iter(f"xiaoxiang:*access.strikes:{ATTACKER}:*"))
    assert int(store.get(key)) == 2
    store.incr(key)  # a strike another web process counted
    last = attacker.get("/api/orders/", **BAD_TOKEN).status_code

    assert [*first, last] == [401, 401, 401]
    assert attacker.get("/api/products/").status_code == 403
    assert BlockedNetwork.objects.filter(network=f"{ATTACKER}/32", reason=AUTO_BAN_REASON).count() == 1


@pytest.mark.redis
def test_with_redis_down_strikes_are_not_counted_and_requests_go_on(bans, client_from, products, caplog, monkeypatch):
    # A cache on a port where no Redis listens: every strike fails to count.
    monkeypatch.setattr(cache_module, "_shared", RedisCache("redis://127.0.0.1:1/0", {}))
    caplog.set_level(logging.WARNING, logger="access.services")

    codes = [client_from(ATTACKER).get("/api/orders/", **BAD_TOKEN).status_code for _ in range(4)]

    assert codes == [401] * 4
    assert not BlockedNetwork.objects.exists()
    assert "strike for 203.0.113.7 not counted (cache unavailable)" in caplog.text


def test_staff_lifting_an_automatic_ban_lets_the_client_back(bans, client_from, products):
    for _ in range(3):
        client_from(ATTACKER).get("/api/orders/", **BAD_TOKEN)
    assert client_from(ATTACKER).get("/api/products/").status_code == 403

    BlockedNetwork.objects.get().delete()

    assert client_from(ATTACKER).get("/api/products/").status_code == 200
