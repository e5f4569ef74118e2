"""The production topology: Daphne and real Celery workers on Redis and PostgreSQL.

Rider points posted over HTTP reach the worker through Redis, which stores an
ETA that a WebSocket watcher sees, and raises exactly one stall alert that
staff see live on /ws/ops/ and that resolves when the rider moves on. A
worker killed with SIGKILL mid-task loses nothing: its unacknowledged task
is redelivered to the next worker.
"""

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import websockets
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from orders.models import Order
from tests.jobs.conftest import backdate, toward_home
from tests.live import ROOT, LiveServer, server_env, start_daphne, stop, wait_until
from tracking import tasks
from tracking.models import Alert, TrackingEvent
from xiaoxiang.celery import app

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _purge_broker() -> None:
    """Drop tasks queued or left unacknowledged by earlier runs (this test owns these workers)."""
    app.control.purge()
    redis.Redis.from_url(settings.REDIS_URL).delete("unacked", "unacked_index")


def start_worker(log_dir: Path, name: str, *extra_args: str, **env: str) -> subprocess.Popen:
    log_path = log_dir / f"worker-{name}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "xiaoxiang",
            "worker",
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            *extra_args,
        ],
        cwd=ROOT,
        env=server_env(TRACKING_JOBS_ENABLED="true", **env),
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        # Its own process group, so a kill reaches the pool children too.
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while "ready." not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise RuntimeError(log_path.read_text(errors="replace"))
        time.sleep(0.2)
    process.log_path = log_path  # type: ignore[attr-defined]
    return process


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def jobs_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveServer]:
    """Daphne with the jobs switched on (the session's daphne_server has them off for other tests)."""
    with django_db_blocker.unblock():
        server = start_daphne(
            tmp_path_factory.mktemp("jobs"),
            TRACKING_JOBS_ENABLED="true",
            THROTTLE_ANON="100000/min",
            THROTTLE_USER="100000/min",
        )
    yield server
    stop(server.process)


@pytest.fixture
def worker(tmp_path) -> Iterator[subprocess.Popen]:
    _purge_broker()
    process = start_worker(tmp_path, "jobs", "--concurrency=2")
    yield process
    stop_worker(process)


def token(user) -> str:
    return str(AccessToken.for_user(user))


async def socket(url: str, access: str):
    ws = await websockets.connect(url)  # an app client: no Origin, first-message token
    await ws.send(json.dumps({"type": "auth", "token": access}))
    return ws


async def frame_matching(ws, predicate: Callable[[dict], bool], *, timeout: float) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("no matching frame in time")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if predicate(frame):
            return frame


def test_points_over_http_update_the_eta_live_and_a_stall_raises_exactly_one_alert(
    jobs_server, worker, make_order, rider, customer, staff
):
    order = backdate(make_order("delivering"), minutes=20)
    now = timezone.now()

    def points(spec: list[tuple[tuple[float, float], float]]) -> dict:
        return {
            "points": [
                {
                    "client_id": uuid.uuid4().hex,
                    "lat": round(position[0], 6),
                    "lon": round(position[1], 6),
                    "recorded_at": (now - dt.timedelta(minutes=minutes_ago)).isoformat(),
                }
                for position, minutes_ago in spec
            ]
        }

    async def post(client: httpx.AsyncClient, body: dict) -> None:
        response = await client.post("/api/rider/locations/", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == []

    async def scenario() -> None:
        watcher = await socket(f"{jobs_server.ws_url}/ws/orders/{order.pk}/", token(customer))
        ops = await socket(f"{jobs_server.ws_url}/ws/ops/", token(staff))
        assert (await frame_matching(watcher, lambda f: True, timeout=5))["type"] == "snapshot"
        assert (await frame_matching(ops, lambda f: True, timeout=5))["type"] == "ops.snapshot"
        headers = {"Authorization": f"Bearer {token(rider)}"}
        async with httpx.AsyncClient(base_url=jobs_server.url, headers=headers, timeout=10) as client:
            # Riding toward the customer: the worker computes an ETA, the watcher sees it.
            await post(client, points([(toward_home(0.1 * step), 12 - 0.25 * step) for step in range(1, 4)]))
            eta_frame = await frame_matching(
                watcher, lambda f: f["type"] == "event" and f["event"]["kind"] == "eta", timeout=15
            )
            assert eta_frame["changes"]["eta"] is not None

            # Then standing still for six minutes, uploaded in three requests.
            spot = toward_home(0.3)
            for batch in range(3):
                await post(client, points([(spot, 10.5 - 2 * batch - 0.25 * step) for step in range(8)]))
            opened = await frame_matching(ops, lambda f: f["type"] == "ops.alert", timeout=20)
            assert (opened["alert"]["order"], opened["alert"]["kind"]) == (order.pk, "stall")
            assert opened["alert"]["resolved_at"] is None

            # Moving on resolves it.
            await post(client, points([(toward_home(0.5), 0)]))
            resolved = await frame_matching(ops, lambda f: f["type"] == "ops.alert", timeout=20)
            assert (resolved["alert"]["id"], resolved["alert"]["kind"]) == (opened["alert"]["id"], "stall")
            assert resolved["alert"]["resolved_at"] is not None
        await watcher.close()
        await ops.close()

    asyncio.run(scenario())

    order.refresh_from_db()
    assert order.eta is not None
    [alert] = Alert.objects.filter(order=order)
    assert (alert.kind, alert.resolved_at is not None) == ("stall", True)
    states = [e.data["alert"]["state"] for e in TrackingEvent.objects.filter(order=order, kind="alert")]
    assert states == ["open", "resolved"]


def test_a_worker_killed_mid_task_is_redelivered_to_the_next_worker(make_order, tmp_path):
    order = make_order("delivering")
    _purge_broker()
    # A short visibility timeout: the unacknowledged task comes back in seconds, not minutes.
    first = start_worker(tmp_path, "doomed", "--pool=solo", CELERY_VISIBILITY_TIMEOUT="3")
    try:
        with transaction.atomic():
            # Hold the order row: the task blocks at its select_for_update, mid-task.
            Order.objects.select_for_update().get(pk=order.pk)
            tasks.eta_recompute.delay(order.pk)

            def worker_waits_for_the_lock() -> bool:
                # Only this test database: other suites may share the server.
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
                        " WHERE NOT granted AND datname = current_database()"
                    )
                    return cursor.fetchone()[0] > 0

            wait_until(worker_waits_for_the_lock, timeout=20, what="the worker to block inside the task")
            assert "tracking.eta_recompute" in first.log_path.read_text()  # it was received, mid-task
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        assert Order.objects.get(pk=order.pk).eta is None  # the killed worker wrote nothing
        time.sleep(3.5)  # past the visibility timeout
        second = start_worker(tmp_path, "heir", CELERY_VISIBILITY_TIMEOUT="3")
        try:
            wait_until(
                lambda: Order.objects.get(pk=order.pk).eta is not None,
                timeout=30,
                what=f"the redelivered task; worker log:\n{second.log_path.read_text()}",
            )
        finally:
            stop_worker(second)
    finally:
        stop_worker(first)

    assert TrackingEvent.objects.filter(order=order, kind="eta").count() == 1
