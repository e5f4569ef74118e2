"""End to end in the production topology: Daphne on PostgreSQL and Redis, a rider
posting GPS over HTTP, real `websockets` clients authenticated by first message."""

import asyncio
import datetime as dt
import json
import time

import httpx
import pytest
import websockets

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.postgres]


def _token(base_url: str, username: str) -> str:
    response = httpx.post(f"{base_url}/api/auth/token/", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access"]


async def _post_point(client: httpx.AsyncClient, token: str, index: int) -> None:
    point = {
        "client_id": f"e2e-{index}",
        "lat": 31.19 + index / 1000,
        "lon": 121.44,
        # 111 m a point, 5 s of device time apart: a plausible ride (tracking/quality.py flags jumps).
        "recorded_at": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5 * index)).isoformat(),
    }
    response = await client.post(
        "/api/rider/locations/", json={"points": [point]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1


async def _open(url: str, token: str) -> tuple:
    ws = await websockets.connect(url)  # an app client: no Origin header
    await ws.send(json.dumps({"type": "auth", "token": token}))
    snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert snapshot["type"] == "snapshot"
    return ws, snapshot


async def _frames_until(ws, version: int) -> list[dict]:
    frames = []
    while not frames or frames[-1]["version"] < version:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] != "heartbeat":
            frames.append(frame)
    return frames


def test_rider_points_stream_to_watchers_and_a_reconnecting_client_converges(
    daphne_server, make_order, customer, rider, other_customer
):
    order = make_order("delivering")
    url = f"{daphne_server.ws_url}/ws/orders/{order.id}/"
    customer_token = _token(daphne_server.url, "alice")
    rider_token = _token(daphne_server.url, "rita")
    outsider_token = _token(daphne_server.url, "bob")

    async def scenario():
        async with httpx.AsyncClient(base_url=daphne_server.url, timeout=10) as http:
            watcher, snapshot = await _open(url, customer_token)
            assert snapshot["version"] == 6
            late, late_snapshot = await _open(url, customer_token)
            await late.close()  # goes away and misses what follows

            for index in range(5):
                await _post_point(http, rider_token, index)
            frames = await _frames_until(watcher, 11)
            assert [frame["version"] for frame in frames] == [7, 8, 9, 10, 11]
            assert all(frame["type"] == "event" and frame["event"]["kind"] == "location" for frame in frames)
            assert frames[-1]["changes"]["rider_position"]["lat"] == 31.194

            late, fresh = await _open(url, customer_token)
            await late.send(json.dumps({"type": "resync", "since_version": late_snapshot["version"]}))
            replay = await _frames_until(late, 11)
            assert [frame["version"] for frame in replay] == [7, 8, 9, 10, 11]
            detail = (
                await http.get(f"/api/orders/{order.id}/", headers={"Authorization": f"Bearer {customer_token}"})
            ).json()
            assert replay[-1]["version"] == fresh["version"] == detail["version"] == 11
            assert replay[-1]["changes"]["rider_position"] == detail["rider_position"]

            outsider = await websockets.connect(url)
            await outsider.send(json.dumps({"type": "auth", "token": outsider_token}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(outsider.recv(), 5)
            assert closed.value.rcvd.code == 4404

            for ws in (watcher, late):
                await ws.close()

    asyncio.run(scenario())


def test_handshake_from_another_site_is_refused(daphne_server, make_order):
    order = make_order("paid")

    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{daphne_server.ws_url}/ws/orders/{order.id}/", origin="https://evil.example")
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())


def test_long_poll_is_woken_across_processes(daphne_server, make_order, customer, rider):
    order = make_order("delivering")
    customer_token = _token(daphne_server.url, "alice")
    rider_token = _token(daphne_server.url, "rita")

    async def scenario():
        async with httpx.AsyncClient(base_url=daphne_server.url, timeout=20) as http:
            started = time.monotonic()
            waiting = asyncio.ensure_future(
                http.get(
                    f"/api/orders/{order.id}/poll/?since_version=6&timeout=15",
                    headers={"Authorization": f"Bearer {customer_token}"},
                )
            )
            await asyncio.sleep(0.5)
            await _post_point(http, rider_token, 1)
            response = await waiting
            return response, time.monotonic() - started

    response, elapsed = asyncio.run(scenario())
    assert response.status_code == 200
    assert elapsed < 5
    assert [(e["version"], e["kind"]) for e in response.json()["events"]] == [(7, "location")]
    assert response.json()["events"][0]["lat"] == 31.191


def test_daphne_sigterm_closes_sockets_with_1012_and_clients_come_back(tmp_path, make_order, customer, staff):
    from tests.live import start_daphne, stop

    order = make_order("delivering")
    server = start_daphne(tmp_path)
    try:
        token = _token(server.url, "alice")
        staff_token = _token(server.url, "sam")

        async def watch() -> list:
            order_ws, _ = await _open(f"{server.ws_url}/ws/orders/{order.id}/", token)
            ops_ws = await websockets.connect(f"{server.ws_url}/ws/ops/")
            await ops_ws.send(json.dumps({"type": "auth", "token": staff_token}))
            assert json.loads(await asyncio.wait_for(ops_ws.recv(), 5))["type"] == "ops.snapshot"
            sockets = [order_ws, ops_ws]
            server.process.terminate()  # SIGTERM, as a deploy or honcho sends it
            codes = []
            for ws in sockets:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
            return codes

        assert asyncio.run(watch()) == [1012, 1012]
        assert server.process.wait(10) is not None  # and then it stops, as before
    finally:
        stop(server.process)

    restarted = start_daphne(tmp_path)
    try:
        started = time.monotonic()
        _, snapshot = asyncio.run(_open(f"{restarted.ws_url}/ws/orders/{order.id}/", _token(restarted.url, "alice")))
        assert snapshot["version"] == order.version
        assert time.monotonic() - started < 5
    finally:
        stop(restarted.process)
