"""No plaintext delivery address or delivery point outside PostgreSQL's encrypted columns (issue 12).

A whole order runs through the production topology (nginx, gunicorn,
Daphne, Celery worker and beat) on a private redis-server, with a socket
and a long-poll watching and every channel-layer message recorded; then
every key in Redis, every recorded message and every process's log are
searched for the address and for the delivery coordinates (as text and as
the binary doubles msgpack would carry).
"""

import asyncio
import json
import struct
import threading
import uuid

import httpx
import pytest
import redis
import websockets
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from tests.live import start_redis, stop
from tests.ops.conftest import topology_start, topology_stop

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ADDRESS = f"上海市徐汇区漕溪北路 88 号 1702 室 PII-{uuid.uuid4().hex[:8]}"
LAT, LON = 31.198765, 121.436789


def needles() -> dict[str, bytes]:
    found = {"address": ADDRESS.encode(), "address tag": ADDRESS.rsplit(" ", 1)[1].encode()}
    for name, value in (("lat", LAT), ("lon", LON)):
        found[f"{name} text"] = repr(value).encode()
        found[f"{name} coarse"] = f"{value:.4f}".encode()
        found[f"{name} double"] = struct.pack(">d", value)
    return found


def leaks(blob: bytes) -> list[str]:
    return [name for name, needle in needles().items() if needle in blob]


def stored_bytes(store: redis.Redis, key: bytes) -> bytes:
    """A key's value as the bytes Redis holds (DUMP would compress long strings and hide them)."""
    kind = store.type(key)
    if kind == b"string":
        return store.get(key) or b""
    if kind == b"hash":
        return b" ".join(field + b"=" + value for field, value in store.hgetall(key).items())
    if kind == b"list":
        return b" ".join(store.lrange(key, 0, -1))
    if kind == b"set":
        return b" ".join(store.smembers(key))
    if kind == b"zset":
        return b" ".join(store.zrange(key, 0, -1))
    return store.dump(key) or b""


class Recorder(threading.Thread):
    """Every message published on the private Redis while the order runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.pubsub = redis.Redis.from_url(url).pubsub()
        self.pubsub.psubscribe("*")
        self.messages: list[bytes] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                self.messages.append(message["channel"] + b" " + message["data"])


def test_no_plaintext_address_or_delivery_point_in_redis_messages_or_logs(
    tmp_path, warehouse, products, customer, operator, rider
):
    redis_server = start_redis(tmp_path)
    redis_url = f"redis://127.0.0.1:{redis_server.port}/0"
    recorder = Recorder(redis_url)
    recorder.start()
    topology = topology_start(tmp_path, REDIS_URL=redis_url, TRACKING_JOBS_ENABLED="true")
    try:

        def auth(user) -> dict[str, str]:
            return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}

        async def scenario() -> None:
            async with httpx.AsyncClient(base_url=topology.url, timeout=15) as client:
                created = await client.post(
                    "/api/orders/",
                    json={
                        "items": [{"sku": "VEG-001", "quantity": 1}],
                        "delivery_address": ADDRESS,
                        "delivery_lat": LAT,
                        "delivery_lon": LON,
                    },
                    headers=auth(customer),
                )
                assert created.status_code == 201, created.text
                order_id = created.json()["id"]
                async with websockets.connect(f"{topology.ws_url}/ws/orders/{order_id}/") as ws:
                    await ws.send(json.dumps({"type": "auth", "token": str(AccessToken.for_user(customer))}))
                    snapshot = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert snapshot["order"]["delivery"]["address"] == ADDRESS  # the owner sees it
                    steps = [
                        ("customer", f"/api/orders/{order_id}/pay/", {}),
                        ("operator", f"/api/warehouse/orders/{order_id}/stage/", {"stage": "picking"}),
                        ("operator", f"/api/warehouse/orders/{order_id}/stage/", {"stage": "picked"}),
                        ("operator", f"/api/warehouse/orders/{order_id}/stage/", {"stage": "packed"}),
                        ("operator", f"/api/warehouse/orders/{order_id}/dispatch/", {"rider": rider.username}),
                    ]
                    users = {"customer": customer, "operator": operator}
                    for who, path, body in steps:
                        answer = await client.post(path, json=body, headers=auth(users[who]))
                        assert answer.status_code == 200, (path, answer.text)
                    mine = await client.get("/api/rider/orders/", headers=auth(rider))
                    assert ADDRESS in mine.text  # the rider sees it too
                    for step in range(5):
                        point = {
                            "client_id": uuid.uuid4().hex,
                            "lat": 31.19 + step * 0.001,
                            "lon": 121.44,
                            "recorded_at": timezone.now().isoformat(),
                        }
                        answer = await client.post(
                            "/api/rider/locations/", json={"points": [point]}, headers=auth(rider)
                        )
                        assert answer.json()["accepted"] == 1
                        await asyncio.sleep(0.3)
                    detail = await client.get(f"/api/orders/{order_id}/", headers=auth(customer))
                    polled = await client.get(
                        f"/api/orders/{order_id}/poll/", params={"since_version": 0}, headers=auth(customer)
                    )
                    assert (detail.status_code, polled.status_code) == (200, 200)
                    delivered = await client.post(
                        f"/api/rider/orders/{order_id}/delivered/", json={}, headers=auth(rider)
                    )
                    assert delivered.status_code == 200
                    await asyncio.sleep(4)  # the ETA and alert jobs run on the worker

        asyncio.run(scenario())
    finally:
        topology_stop(topology)
        recorder.stopping.set()
        recorder.join(5)

    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter("*"))
    stored = {key: stored_bytes(store, key) for key in keys}
    snapshot_keys = [key for key in keys if b"order-snapshot" in key]
    stop(redis_server.process)
    print(f"\n{len(keys)} Redis keys ({len(snapshot_keys)} snapshots), {len(recorder.messages)} messages scanned")

    assert snapshot_keys, "the run cached no snapshot: nothing was tested"
    assert recorder.messages, "no channel-layer message was recorded: nothing was tested"
    assert {key.decode(): leaks(value) for key, value in stored.items() if leaks(value)} == {}
    assert [leaks(message) for message in recorder.messages if leaks(message)] == []
    assert leaks(topology.log().encode()) == []
