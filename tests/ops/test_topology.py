"""deploy/Procfile's topology: nginx is the one origin, gunicorn answers REST, Daphne the sockets and the long-poll.

Which process answered is read from each process's own request counter
(xiaoxiang_http_requests_total by view), so a routing mistake in the nginx
config fails here even though every path would still answer.
"""

import asyncio
import json
import uuid

import httpx
import pytest
import redis
import websockets
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from tracking.models import TrackingEvent

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


def answered(topology, role: str, view: str) -> float:
    """How many requests for `view` this role's process answered (any status)."""
    return sum(
        value
        for (name, labels), value in topology.samples(role).items()
        if name == "xiaoxiang_http_requests_total" and f'view="{view}"' in labels
    )


def test_rest_goes_through_nginx_to_gunicorn(topology, make_order, customer):
    order = make_order("paid")
    before = {role: answered(topology, role, "api-order-detail") for role in ("web", "ws")}

    response = httpx.get(f"{topology.url}/api/orders/{order.pk}/", headers=bearer(customer), timeout=10)

    assert response.status_code == 200
    assert (response.headers["server"], response.json()["id"], response.json()["status"]) == ("nginx", order.pk, 2)
    assert answered(topology, "web", "api-order-detail") == before["web"] + 1
    assert answered(topology, "ws", "api-order-detail") == before["ws"]


def test_health_probes_answer_through_nginx(topology):
    assert httpx.get(f"{topology.url}/healthz").text == "ok\n"
    assert httpx.get(f"{topology.url}/readyz").text == "ready\n"
    # The scrape endpoint is not on the public origin; each process is scraped directly.
    assert httpx.get(f"{topology.url}/metrics").status_code == 404


def test_websocket_through_nginx_reaches_daphne_and_gets_the_snapshot(topology, make_order, customer):
    order = make_order("delivering")

    async def first_frame() -> dict:
        async with websockets.connect(f"{topology.ws_url}/ws/orders/{order.pk}/") as ws:
            await ws.send(json.dumps({"type": "auth", "token": str(AccessToken.for_user(customer))}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    frame = asyncio.run(first_frame())

    assert (frame["type"], frame["version"], frame["order"]["id"]) == ("snapshot", order.version, order.pk)
    assert frame["order"]["status"] == 3


def test_long_poll_through_nginx_is_served_by_daphne_and_woken_by_a_point_posted_to_gunicorn(
    topology, make_order, customer, rider
):
    order = make_order("delivering")
    before = answered(topology, "ws", "order-poll")
    point = {"client_id": uuid.uuid4().hex, "lat": 31.19, "lon": 121.44, "recorded_at": timezone.now().isoformat()}

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=topology.url, timeout=30) as client:
            poll = asyncio.create_task(
                client.get(
                    f"/api/orders/{order.pk}/poll/",
                    params={"since_version": order.version, "timeout": 20},
                    headers=bearer(customer),
                )
            )
            await asyncio.sleep(1.0)  # the poll is waiting on Daphne
            assert not poll.done()
            posted = await client.post("/api/rider/locations/", json={"points": [point]}, headers=bearer(rider))
            return posted, await poll

    posted, polled = asyncio.run(scenario())

    assert (posted.status_code, posted.json()) == (200, {"accepted": 1, "duplicates": 0, "rejected": []})
    assert polled.status_code == 200
    [event] = polled.json()["events"]
    assert (event["kind"], event["version"], event["lat"], event["lon"]) == (
        "location",
        order.version + 1,
        31.19,
        121.44,
    )
    assert TrackingEvent.objects.filter(order=order, kind="location").count() == 1
    assert answered(topology, "ws", "order-poll") == before + 1
    assert answered(topology, "web", "order-poll") == 0


def test_nginx_names_the_real_client_to_gunicorn_and_daphne_and_a_client_cannot_spoof_it(
    topology, make_order, customer
):
    from django.conf import settings

    order = make_order("paid")
    spoofed = {"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "198.51.100.7"}
    store = redis.Redis.from_url(settings.REDIS_URL)
    for key in store.scan_iter("xiaoxiang:*throttle_anon_*"):
        store.delete(key)

    # gunicorn: DRF's anonymous throttle keys on the client address nginx passed.
    assert httpx.get(f"{topology.url}/api/products/", headers=spoofed, timeout=10).status_code == 200
    throttled = {key.decode() for key in store.scan_iter("xiaoxiang:*throttle_anon_*")}
    assert throttled == {"xiaoxiang:1:throttle_anon_127.0.0.1"}

    # Daphne: the per-IP socket slots key on the address nginx passed.
    async def slot_scopes_while_open() -> set[str]:
        async with websockets.connect(f"{topology.ws_url}/ws/orders/{order.pk}/", additional_headers=spoofed) as ws:
            await ws.send(json.dumps({"type": "auth", "token": str(AccessToken.for_user(customer))}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
            return {key.decode() for key in store.scan_iter("xiaoxiang:ws-slots:ip:*")}

    scopes = asyncio.run(slot_scopes_while_open())
    # (Slots of other tests' sockets may still be leased: only ours and the spoofed ones matter.)
    assert "xiaoxiang:ws-slots:ip:127.0.0.1" in scopes
    assert not {f"xiaoxiang:ws-slots:ip:{address}" for address in spoofed.values()} & scopes
