"""The real client address: the X-Real-IP of a trusted proxy only; everything downstream sees the same address."""

import pytest
from rest_framework.throttling import SimpleRateThrottle

from tests.access.conftest import ATTACKER, BYSTANDER, block
from tests.realtime.conftest import receive, run
from xiaoxiang import sockets
from xiaoxiang.client_ip import RealClientIP, client_ip, wsgi_environ_apply
from xiaoxiang.routing import websocket_application


@pytest.mark.parametrize(
    ("peer", "real_ip", "expected"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # nginx names the client
        ("::1", "2001:db8::7", "2001:db8::7"),
        ("127.0.0.1", None, "127.0.0.1"),  # a local caller without the header
        ("127.0.0.1", "not an address", "127.0.0.1"),
        ("127.0.0.1", "::ffff:203.0.113.7", "203.0.113.7"),
        ("198.51.100.20", "203.0.113.7", "198.51.100.20"),  # a client reaching the backend directly
        ("198.51.100.20", "127.0.0.1", "198.51.100.20"),
    ],
)
def test_only_a_trusted_proxy_names_the_client(peer, real_ip, expected):
    assert client_ip(peer, real_ip) == expected


def test_trusted_proxies_come_from_settings(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_ip("10.2.3.4", ATTACKER) == ATTACKER
    assert client_ip("127.0.0.1", ATTACKER) == "127.0.0.1"


def test_the_wsgi_entry_point_applies_the_rule():
    from_nginx = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": ATTACKER}
    forged = {"REMOTE_ADDR": BYSTANDER, "HTTP_X_REAL_IP": ATTACKER, "HTTP_X_FORWARDED_FOR": ATTACKER}
    wsgi_environ_apply(from_nginx)
    wsgi_environ_apply(forged)

    assert from_nginx["REMOTE_ADDR"] == ATTACKER
    assert forged["REMOTE_ADDR"] == BYSTANDER


@pytest.mark.django_db
def test_drf_throttles_ignore_a_forged_x_forwarded_for(client_from, products, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "anon": "2/min"})

    codes = [
        client_from(ATTACKER).get("/api/products/", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code for n in range(3)
    ]

    assert codes == [200, 200, 429]


@pytest.mark.django_db(transaction=True)
def test_daphnes_stack_applies_the_rule_to_sockets(make_order, customer):
    from channels.testing import WebsocketCommunicator

    order = make_order("paid")
    block(ATTACKER)
    sockets.connection_slots._local.clear()

    def communicator(peer: str, real_ip: str) -> WebsocketCommunicator:
        app = RealClientIP(websocket_application())
        ws = WebsocketCommunicator(app, f"/ws/orders/{order.id}/", headers=[(b"x-real-ip", real_ip.encode())])
        ws.scope["client"] = [peer, 40000]
        return ws

    async def body():
        # nginx names the blocked attacker: refused.
        assert (await communicator("127.0.0.1", ATTACKER).connect())[0] is False
        # The attacker reaching Daphne directly, naming someone else: still the attacker, still refused.
        assert (await communicator(ATTACKER, BYSTANDER).connect())[0] is False
        # A client named by nginx gets its own per-IP connection slot.
        allowed = communicator("127.0.0.1", BYSTANDER)
        assert (await allowed.connect())[0] is True
        from channels.db import database_sync_to_async

        from tests.realtime.conftest import access_token

        await allowed.send_json_to({"type": "auth", "token": await database_sync_to_async(access_token)(customer)})
        assert (await receive(allowed))["type"] == "snapshot"
        assert f"ip:{BYSTANDER}" in sockets.connection_slots._local or _redis_slot(BYSTANDER)
        await allowed.disconnect()

    run(body)


def _redis_slot(address: str) -> bool:
    from django.conf import settings

    if not settings.REDIS_URL:
        return False
    import redis

    return bool(redis.Redis.from_url(settings.REDIS_URL).exists(f"xiaoxiang:ws-slots:ip:{address}"))
