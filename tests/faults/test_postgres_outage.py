"""PostgreSQL stopped for 10 s under rider traffic, against the production topology (issue 12).

The topology runs on a PostgreSQL cluster of its own (pg_createcluster on a
free port), which this test stops and starts again. While it is down every
answer is 503 with Retry-After and a `detail` (never a 500), sockets close
with 1013 (try again later), /readyz says not ready; afterwards everything
answers again, every acknowledged point is stored and no change is
half-written.
"""

import asyncio
import json
import subprocess
import time

import httpx
import psycopg2
import pytest
import websockets

from tests.faults.servers import Poster, PostgresCluster, point_post
from tests.live import ROOT, server_env
from tests.ops.conftest import topology_start, topology_stop

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

OUTAGE_SECONDS = 10
PASSWORD = "fault-test-password"


@pytest.fixture
def cluster():
    made = PostgresCluster()
    try:
        env = server_env(DATABASE_URL=made.url)
        for command in (
            ["migrate", "--noinput", "-v0"],
            ["seed_demo", "--riders", "1", "--customers", "1", "--password", PASSWORD],
        ):
            subprocess.run(
                [str(ROOT / ".venv/bin/python"), "manage.py", *command],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
        yield made
    finally:
        made.drop()


def test_postgres_stopped_for_10_s(tmp_path, cluster):
    topology = topology_start(tmp_path, DATABASE_URL=cluster.url, TRACKING_JOBS_ENABLED="true")
    try:
        with httpx.Client(base_url=topology.url, timeout=15) as client:

            def auth(username: str) -> dict[str, str]:
                token = client.post("/api/auth/token/", json={"username": username, "password": PASSWORD}).json()
                return {"Authorization": f"Bearer {token['access']}"}

            customer, operator, rider = auth("customer1"), auth("warehouse1"), auth("rider1")
            created = client.post(
                "/api/orders/",
                json={
                    "items": [{"sku": client.get("/api/products/").json()[0]["sku"], "quantity": 1}],
                    "delivery_address": "上海市徐汇区 1 号",
                    "delivery_lat": 31.2,
                    "delivery_lon": 121.45,
                },
                headers=customer,
            )
            order_id = created.json()["id"]
            for headers, path, body in [
                (customer, f"/api/orders/{order_id}/pay/", {}),
                (operator, f"/api/warehouse/orders/{order_id}/stage/", {"stage": "picking"}),
                (operator, f"/api/warehouse/orders/{order_id}/stage/", {"stage": "picked"}),
                (operator, f"/api/warehouse/orders/{order_id}/stage/", {"stage": "packed"}),
                (operator, f"/api/warehouse/orders/{order_id}/dispatch/", {"rider": "rider1"}),
            ]:
                assert client.post(path, json=body, headers=headers).status_code == 200, path

        ingest = Poster(topology.url, point_post(rider))
        reads = Poster(topology.url, lambda http, _: http.get(f"/api/orders/{order_id}/", headers=customer))
        ready = Poster(topology.url, lambda http, _: http.get("/readyz"))
        posters = (ingest, reads, ready)
        for poster in posters:
            poster.start()
        time.sleep(2)
        cluster.stop()
        stopped_at = time.monotonic()

        async def socket_during_outage() -> int | None:
            async with websockets.connect(f"{topology.ws_url}/ws/orders/{order_id}/") as ws:
                await ws.send(json.dumps({"type": "auth", "token": customer["Authorization"].split()[1]}))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                return closed.value.rcvd.code if closed.value.rcvd else None

        time.sleep(2)
        socket_close = asyncio.run(socket_during_outage())
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        restarting_at = time.monotonic()
        cluster.start()
        started_at = time.monotonic()  # pg_isready answers
        time.sleep(6)
        for poster in posters:
            poster.stopping.set()
            poster.join(20)
    finally:
        topology_stop(topology)

    def answers_during(poster: Poster) -> list:
        # A margin after the stop: a request sent as PostgreSQL stops may see either side.
        return poster.between(stopped_at + 0.5, restarting_at)

    def recovered_after(poster: Poster) -> float:
        """Seconds from the restart to the first 200 after which every answer is 200."""
        after = poster.between(started_at, float("inf"))
        for index, answer in enumerate(after):
            if all(later.status == 200 for later in after[index:]):
                return answer.sent_at - started_at
        return float("inf")

    summary = {
        name: (sorted({answer.status for answer in answers_during(poster)}), f"{recovered_after(poster):.1f} s")
        for name, poster in (("ingest", ingest), ("detail", reads), ("readyz", ready))
    }
    with psycopg2.connect(cluster.url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT client_id FROM order_tracking WHERE order_id = %s AND client_id IS NOT NULL", [order_id])
        stored = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT version FROM order_tracking WHERE order_id = %s ORDER BY version", [order_id])
        versions = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT version FROM orders WHERE id = %s", [order_id])
        order_version = cursor.fetchone()[0]
    acknowledged = {
        answer.point_id for answer in ingest.answers if answer.status == 200 and answer.body.get("accepted")
    }
    posted = {answer.point_id for answer in ingest.answers}
    print(
        f"\npostgres outage {OUTAGE_SECONDS} s: during (statuses) and recovery after restart {summary}; "
        f"socket opened during: close {socket_close}; {len(acknowledged)} acknowledged, {len(stored)} stored, "
        f"versions 1..{order_version}"
    )

    for poster in posters:
        during = answers_during(poster)
        assert during, "nothing was sent while PostgreSQL was down"
        assert {answer.status for answer in during} == {503}
        assert recovered_after(poster) <= 10
    # The API's answers say when to come back and why; /readyz is a probe and just says "not ready".
    api_during = answers_during(ingest) + answers_during(reads)
    assert all(
        answer.retry_after == "5" and "database is unavailable" in answer.body["detail"] for answer in api_during
    )
    assert all(answer.status < 500 or answer.status == 503 for poster in posters for answer in poster.answers)
    assert socket_close == 1013
    assert acknowledged <= stored <= posted
    assert versions == list(range(1, order_version + 1))  # every change whole: no version lost or doubled
