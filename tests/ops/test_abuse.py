"""Abuse controls in the production topology: nginx in front of gunicorn and Daphne, Redis, PostgreSQL.

Clients call from their own loopback addresses (127.0.0.7, ...): nginx sees
that address, as it would a remote client's, and names it in X-Real-IP.
"""

import asyncio
import itertools
import re

import httpx
import pytest
import websockets
from rest_framework_simplejwt.tokens import AccessToken

from access.models import AUTO_BAN_REASON, BlockedNetwork
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def topology_env() -> dict[str, str]:
    return {
        "ACCESS_AUTO_BAN_THRESHOLD": "4",
        "ACCESS_AUTO_BAN_WINDOW_SECONDS": "60",
        "ACCESS_BLOCKLIST_REFRESH_SECONDS": "1",
        "LOGIN_FAILURE_LIMIT": "3",
    }


_forged = itertools.count(1)


def forged() -> dict[str, str]:
    """Headers a client sends to pass for someone else: new addresses every time."""
    n = next(_forged)
    return {"X-Forwarded-For": f"198.51.100.{n}, 10.0.0.{n}", "X-Real-IP": f"192.0.2.{n}"}


def http_from(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=10)


async def ws_status(url: str, address: str, token: str | None = None, **headers: str) -> int | str:
    """The handshake's refusal status, or the first frame's type when it was accepted."""
    try:
        async with websockets.connect(url, local_addr=(address, 0), additional_headers=headers) as ws:
            if token:
                await ws.send(f'{{"type": "auth", "token": "{token}"}}')
            frame = await asyncio.wait_for(ws.recv(), 10)
            return re.search(r'"type": ?"([a-z.]+)"', frame)[1]
    except websockets.exceptions.InvalidStatus as refused:
        return refused.response.status_code


def test_a_client_forging_forwarding_headers_cannot_dodge_its_ban(topology, make_order, customer):
    attacker, bystander = "127.0.0.7", "127.0.0.8"
    order = make_order("paid")
    token = str(AccessToken.for_user(customer))
    web, ws = f"http://127.0.0.1:{topology.web_port}", f"http://127.0.0.1:{topology.ws_port}"
    poll = f"/api/orders/{order.pk}/poll/?since_version=1&timeout=0"

    async def scenario() -> dict:
        async with http_from(attacker) as http:
            strikes = [
                (
                    await http.get(f"{topology.url}/api/orders/", headers={"Authorization": "Bearer x", **forged()})
                ).status_code
                for _ in range(4)
            ]
            await asyncio.sleep(1.5)  # every process's copy refreshed (ACCESS_BLOCKLIST_REFRESH_SECONDS=1)
            through_nginx = [
                (await http.get(f"{topology.url}{path}", headers={"Authorization": f"Bearer {token}", **forged()}))
                for path in ["/api/products/", "/api/orders/", poll, "/accounts/login/"] * 2
            ]
            # Reaching the backends directly, naming someone else in X-Real-IP, changes nothing either.
            direct = [
                (await http.get(f"{base}{path}", headers={"X-Real-IP": bystander, **forged()})).status_code
                for base, path in [(web, "/api/products/"), (ws, poll)]
            ]
        sockets = [
            await ws_status(f"{topology.ws_url}/ws/orders/{order.pk}/", attacker, token, **forged()),
            await ws_status(
                f"ws://127.0.0.1:{topology.ws_port}/ws/orders/{order.pk}/", attacker, token, **{"X-Real-IP": bystander}
            ),
        ]
        async with http_from(bystander) as http:
            bystander_http = (await http.get(f"{topology.url}/api/products/")).status_code
        bystander_ws = await ws_status(f"{topology.ws_url}/ws/orders/{order.pk}/", bystander, token)
        return {
            "strikes": strikes,
            "through_nginx": through_nginx,
            "direct": direct,
            "sockets": sockets,
            "bystander": (bystander_http, bystander_ws),
        }

    seen = asyncio.run(scenario())

    assert seen["strikes"] == [401] * 4
    ban = BlockedNetwork.objects.get()
    assert (ban.network, ban.reason) == (f"{attacker}/32", AUTO_BAN_REASON)
    assert [response.status_code for response in seen["through_nginx"]] == [403] * 8
    api_answer = seen["through_nginx"][0]
    assert api_answer.json() == {"detail": "Requests from your address are blocked for a while; try again later."}
    assert int(api_answer.headers["Retry-After"]) > 0
    assert seen["through_nginx"][2].json()["detail"].startswith("Requests from your address are blocked")  # Daphne
    assert seen["through_nginx"][3].headers["Content-Type"].startswith("text/plain")
    assert seen["direct"] == [403, 403]
    assert seen["sockets"] == [403, 403]
    assert seen["bystander"] == (200, "snapshot")


def test_logging_out_through_nginx_closes_the_sessions_socket_on_daphne(topology, make_order, customer):
    order = make_order("paid")
    address = "127.0.0.9"

    async def scenario() -> tuple[str, int]:
        async with http_from(address) as http:
            await http.get(f"{topology.url}/accounts/login/")
            login = await http.post(
                f"{topology.url}/accounts/login/",
                data={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
            )
            assert login.status_code == 302, login.text[:500]
            cookie = f"sessionid={http.cookies['sessionid']}"
            async with websockets.connect(
                f"{topology.ws_url}/ws/orders/{order.pk}/",
                local_addr=(address, 0),
                additional_headers={"Origin": topology.url, "Cookie": cookie},
            ) as ws:
                first = re.search(r'"type": ?"([a-z.]+)"', await asyncio.wait_for(ws.recv(), 10))[1]
                logout = await http.post(
                    f"{topology.url}/accounts/logout/", data={"csrfmiddlewaretoken": http.cookies["csrftoken"]}
                )
                assert logout.status_code == 302
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                return first, closed.value.rcvd.code

    assert asyncio.run(scenario()) == ("snapshot", 4401)


def test_login_lockout_through_nginx_keys_on_the_real_client_not_its_headers(topology, customer):
    attacker, bystander = "127.0.0.10", "127.0.0.11"

    async def scenario() -> tuple[list[int], int, int]:
        async with http_from(attacker) as http:
            url = f"{topology.url}/api/auth/token/"
            failures = [
                (
                    await http.post(url, json={"username": "alice", "password": f"guess-{n}"}, headers=forged())
                ).status_code
                for n in range(3)
            ]
            right = await http.post(url, json={"username": "alice", "password": PASSWORD}, headers=forged())
        async with http_from(bystander) as http:
            other = await http.post(url, json={"username": "alice", "password": PASSWORD})
        return failures, right, other

    failures, right, other = asyncio.run(scenario())

    assert failures == [401, 401, 429]
    assert right.status_code == 429
    assert right.json()["detail"].startswith("Too many failed logins for this account from your address.")
    assert other.status_code == 200
