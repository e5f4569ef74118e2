"""The IP blocklist: staff manage it in the admin; HTTP and WebSocket handshakes from a blocked client are refused."""

import datetime as dt
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.blocklist import Blocklist
from access.models import BlockedNetwork
from tests.access.conftest import ATTACKER, BYSTANDER, block
from tests.realtime.conftest import open_with_token, receive, run, socket

pytestmark = pytest.mark.django_db


def test_a_blocked_address_gets_403_with_a_detail_on_the_api_and_a_plain_page_elsewhere(client_from, products):
    block(ATTACKER)

    api = client_from(ATTACKER).get("/api/products/")
    page = client_from(ATTACKER).get("/accounts/login/")
    bystander = client_from(BYSTANDER).get("/api/products/")

    assert api.status_code == 403
    assert api.json() == {"detail": "Requests from your address are blocked."}
    assert "Retry-After" not in api
    assert page.status_code == 403
    assert page["Content-Type"] == "text/plain; charset=utf-8"
    assert "Requests from your address are blocked." in page.content.decode()
    assert bystander.status_code == 200


def test_a_blocked_write_changes_nothing(client_from, groups):
    block(ATTACKER)

    response = client_from(ATTACKER).post(
        "/api/auth/register/", {"username": "mallory", "password": "a-long-password-1"}, format="json"
    )

    assert response.status_code == 403
    assert not User.objects.filter(username="mallory").exists()


@pytest.mark.parametrize(
    ("network", "inside", "outside"),
    [
        ("203.0.113.0/24", ["203.0.113.0", "203.0.113.255"], ["203.0.112.255", "203.0.114.0"]),
        ("2001:db8::/32", ["2001:db8::1", "2001:db8:ffff::9"], ["2001:db9::1", "203.0.113.7"]),
        ("203.0.113.7", ["203.0.113.7", "::ffff:203.0.113.7"], ["203.0.113.8"]),
    ],
)
def test_a_range_blocks_every_address_in_it_and_no_other(client_from, products, network, inside, outside):
    block(network)

    assert [client_from(address).get("/api/products/").status_code for address in inside] == [403] * len(inside)
    assert [client_from(address).get("/api/products/").status_code for address in outside] == [200] * len(outside)


def test_an_entry_stops_applying_the_moment_it_expires(client_from, products, settings):
    settings.ACCESS_BLOCKLIST_REFRESH_SECONDS = 3600  # no reload: the copy itself knows the expiry
    block(ATTACKER, expires_in=dt.timedelta(seconds=1.5))
    block(BYSTANDER, expires_in=dt.timedelta(seconds=-1))

    blocked = client_from(ATTACKER).get("/api/products/")
    time.sleep(1.6)
    after = client_from(ATTACKER).get("/api/products/")

    assert blocked.status_code == 403
    assert 1 <= int(blocked["Retry-After"]) <= 2
    assert blocked.json()["detail"] == "Requests from your address are blocked for a while; try again later."
    assert after.status_code == 200
    assert client_from(BYSTANDER).get("/api/products/").status_code == 200


def _blocklist_queries(queries) -> int:
    return sum("access_blocked_network" in query["sql"] for query in queries)


def test_the_copy_is_read_once_per_refresh_interval_not_per_request(client_from, products, settings):
    settings.ACCESS_BLOCKLIST_REFRESH_SECONDS = 3600
    block(ATTACKER)

    with CaptureQueriesContext(connection) as queries:
        codes = [client_from(BYSTANDER).get("/api/products/").status_code for _ in range(5)]
        codes.append(client_from(ATTACKER).get("/api/products/").status_code)

    assert codes == [200] * 5 + [403]
    assert _blocklist_queries(queries.captured_queries) == 1


def test_another_process_sees_an_entry_within_the_refresh_interval(settings):
    # A second copy stands for another process: the save invalidated only this process's copy.
    settings.ACCESS_BLOCKLIST_REFRESH_SECONDS = 0.5
    other = Blocklist()
    other.load()
    block(ATTACKER)

    seen_at_once = other.match(ATTACKER) if not other.due() else "reloaded too early"
    time.sleep(0.6)
    assert other.due()
    other.load()

    assert seen_at_once is None
    assert other.match(ATTACKER) is not None


@pytest.fixture
def admin_client_for(staff) -> Client:
    staff.is_superuser = True
    staff.save()
    client = Client(REMOTE_ADDR="127.0.0.1")
    client.force_login(staff)
    return client


def test_staff_add_a_range_in_the_admin_and_it_applies_at_once(
    admin_client_for, client_from, products, staff, django_capture_on_commit_callbacks
):
    assert client_from(BYSTANDER).get("/api/products/").status_code == 200  # the copy is loaded, without it
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_for.post(
            "/admin/access/blockednetwork/add/",
            {"network": " 198.51.100.77/24 ", "reason": "credential stuffing", "expires_at_0": "", "expires_at_1": ""},
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = BlockedNetwork.objects.get()
    assert (entry.network, entry.reason, entry.expires_at, entry.created_by) == (
        "198.51.100.0/24",
        "credential stuffing",
        None,
        staff,
    )
    assert client_from(BYSTANDER).get("/api/products/").status_code == 403


def test_the_admin_refuses_what_is_not_an_address_or_range(admin_client_for):
    response = admin_client_for.post(
        "/admin/access/blockednetwork/add/",
        {"network": "203.0.113.300", "reason": "typo", "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 200
    assert "Enter an IPv4 or IPv6 address or a CIDR range" in response.content.decode()
    assert not BlockedNetwork.objects.exists()


def test_lifting_entries_in_the_admin_lets_the_client_back(
    admin_client_for, client_from, products, django_capture_on_commit_callbacks
):
    entry = block(ATTACKER)
    assert client_from(ATTACKER).get("/api/products/").status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_for.post(
            "/admin/access/blockednetwork/", {"action": "lift", "_selected_action": [entry.pk]}
        )
    listing = admin_client_for.get("/admin/access/blockednetwork/?active=no")

    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.expires_at <= timezone.now()
    assert client_from(ATTACKER).get("/api/products/").status_code == 200
    assert ATTACKER in listing.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_websocket_handshake_from_a_blocked_address_is_refused(make_order, customer):
    order = make_order("paid")
    block(ATTACKER)

    async def body():
        refused = socket(f"/ws/orders/{order.id}/", client_ip=ATTACKER)
        # Closed before the accept: Daphne answers the handshake 403 (tests/ops/test_abuse.py sees it).
        connected, _ = await refused.connect()
        assert connected is False
        allowed = await open_with_token(f"/ws/orders/{order.id}/", customer, client_ip=BYSTANDER)
        assert (await receive(allowed))["type"] == "snapshot"
        await allowed.disconnect()
        # A notification socket is refused the same way, before any authentication.
        refused_too = socket("/ws/notifications/", client_ip=ATTACKER)
        assert (await refused_too.connect())[0] is False

    run(body)
