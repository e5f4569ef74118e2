"""Redis killed for 10 s under rider traffic, against the production topology (issue 12).

The topology (nginx, gunicorn, Daphne, Celery worker and beat) runs on a
private redis-server, which this test kills with SIGKILL and starts again on
the same port. PostgreSQL stays up: it is the truth, so ingest and REST
reads keep answering, and every watcher ends on the REST version.
"""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from rest_framework_simplejwt.tokens import AccessToken

from tests.faults.servers import Poster, point_post
from tests.live import start_redis, stop
from tests.ops.conftest import topology_start, topology_stop
from tracking.models import TrackingEvent

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 10
WATCHERS = 4


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


async def watch(
    ws_url: str, order_id: str, token: str, versions: dict[int, int], index: int, stop: asyncio.Event, delay: float
):
    """A client like the order page: reconnects (0.5 s backoff) on any close and follows versions."""
    closes = []
    await asyncio.sleep(delay)
    while not stop.is_set():
        try:
            async with websockets.connect(f"{ws_url}/ws/orders/{order_id}/", open_timeout=5) as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                while not stop.is_set():
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                    except TimeoutError:
                        continue
                    if frame.get("version") is not None and frame["type"] in ("snapshot", "event", "heartbeat"):
                        versions[index] = max(versions.get(index, 0), frame["version"])
        except (OSError, websockets.WebSocketException, TimeoutError) as error:
            closes.append(getattr(getattr(error, "rcvd", None), "code", type(error).__name__))
            await asyncio.sleep(0.5)
    return closes


def test_redis_killed_for_10_s_under_rider_traffic(tmp_path, make_order, customer, rider):
    order = make_order("delivering")
    servers = [start_redis(tmp_path)]  # then the same port again, after the outage
    port = servers[0].port
    topology = topology_start(tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0", TRACKING_JOBS_ENABLED="true")
    try:
        # The Celery worker (a restart by its supervisor would be a new pid).
        worker = topology.main_pid("-A", "xiaoxiang", "worker")
        rider_client = Poster(topology.url, point_post(bearer(rider)))
        token = str(AccessToken.for_user(customer))
        versions: dict[int, int] = {}
        reads: list[int] = []
        timeline: dict[str, float] = {}

        async def scenario() -> tuple[list, float]:
            stop = asyncio.Event()
            watchers = [
                # The last one opens its socket while Redis is down.
                asyncio.create_task(
                    watch(topology.ws_url, order.pk, token, versions, index, stop, 5 if index == WATCHERS - 1 else 0)
                )
                for index in range(WATCHERS)
            ]
            async with httpx.AsyncClient(base_url=topology.url, timeout=15) as client:
                rider_client.start()
                await asyncio.sleep(3)
                servers[0].process.kill()  # SIGKILL: connections drop without a goodbye, as in a crash
                servers[0].process.wait()
                timeline["killed"] = time.monotonic()
                while time.monotonic() - timeline["killed"] < OUTAGE_SECONDS:
                    reads.append((await client.get(f"/api/orders/{order.pk}/", headers=bearer(customer))).status_code)
                    polled = await client.get(
                        f"/api/orders/{order.pk}/poll/",
                        params={"since_version": 0, "timeout": 1},
                        headers=bearer(customer),
                    )
                    reads.append(polled.status_code)
                    await asyncio.sleep(0.5)
                rider_client.stopping.set()
                await asyncio.to_thread(rider_client.join, 20)
                servers.append(start_redis(tmp_path, port=port))
                timeline["back"] = time.monotonic()
                # Every watcher on the REST version: how long after Redis came back.
                rest_version = None
                while time.monotonic() - timeline["back"] < 30:
                    detail = await client.get(f"/api/orders/{order.pk}/", headers=bearer(customer))
                    rest_version = detail.json()["version"]
                    if len(versions) == WATCHERS and all(seen == rest_version for seen in versions.values()):
                        break
                    await asyncio.sleep(0.2)
                converged_after = time.monotonic() - timeline["back"]
            stop.set()
            closes = await asyncio.gather(*watchers)
            return closes, converged_after, rest_version

        closes, converged_after, rest_version = asyncio.run(scenario())

        during = rider_client.between(timeline["killed"], timeline["back"])
        during_seconds = sorted(answer.seconds for answer in during)
        accepted = [
            answer.point_id for answer in rider_client.answers if answer.status == 200 and answer.body["accepted"]
        ]
        stored = set(
            TrackingEvent.objects.filter(order=order, client_id__in=accepted).values_list("client_id", flat=True)
        )
        statuses = sorted({answer.status for answer in rider_client.answers})
        print(
            f"\nredis outage {OUTAGE_SECONDS} s: {len(rider_client.answers)} POSTs ({len(during)} during), "
            f"statuses {statuses}, p50 {during_seconds[len(during_seconds) // 2] * 1000:.0f} ms / max "
            f"{during_seconds[-1] * 1000:.0f} ms during; {len(accepted)} acknowledged, {len(stored)} stored; "
            f"{len(reads)} reads (detail, poll) during, statuses {sorted(set(reads))}; "
            f"watchers on REST version {rest_version} {converged_after:.1f} s after Redis returned; closes {closes}"
        )
        assert during, "the rider posted nothing while Redis was down"
        assert all(answer.status < 500 for answer in rider_client.answers), statuses
        assert all(answer.status == 200 for answer in during)
        assert set(reads) == {200}
        assert stored == set(accepted)
        assert versions == dict.fromkeys(range(WATCHERS), rest_version)
        assert converged_after <= 10
        assert topology.main_pid("-A", "xiaoxiang", "worker") == worker, (
            f"the Celery worker died:\n{topology.log()[-3000:]}"
        )
    finally:
        topology_stop(topology)
        for server in servers:
            stop(server.process)
