"""Graceful shutdown: on SIGTERM gunicorn and Celery finish the work in flight; the supervisor restarts what exits.

Work is held "in flight" by a row lock this test takes: the request or the
task blocks at its SELECT ... FOR UPDATE until the test lets it go, after
the signal has arrived. (Daphne's SIGTERM, closing sockets with 1012, is
tests/realtime/test_e2e.py's.)
"""

import signal
import sys
import threading
import time

import httpx
import pytest
import redis
from django.db import transaction
from rest_framework_simplejwt.tokens import AccessToken

from orders.models import Order
from tests.faults.conftest import children, procfile_argv, role_env, wait_until, waiting_for_a_lock
from tests.live import free_port, server_env
from tracking.models import TrackingEvent
from tracking.tasks import eta_recompute
from xiaoxiang.celery import app

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_gunicorn_finishes_a_request_in_flight_when_sigterm_arrives(processes, make_order, customer):
    order = make_order("pending")
    port = free_port()
    env = server_env(WEB_PORT=str(port), WEB_CONCURRENCY="2")
    web = processes.start("web", procfile_argv("web", env, supervised=False), env)
    wait_until(lambda: _answers(port), timeout=60, what=f"gunicorn; log:\n{web.log()}")
    answers = []
    with transaction.atomic():
        Order.objects.select_for_update().get(pk=order.pk)  # the pay request blocks on this row
        request = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/api/orders/{order.pk}/pay/",
                    headers={"Authorization": f"Bearer {AccessToken.for_user(customer)}"},
                    timeout=60,
                )
            )
        )
        request.start()
        wait_until(waiting_for_a_lock, timeout=30, what=f"the request in flight; log:\n{web.log()}")
        web.popen.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert web.popen.poll() is None  # still draining
    request.join(30)
    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert Order.objects.get(pk=order.pk).status == 2  # paid
    assert web.popen.wait(30) == 0


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_celery_warm_shutdown_finishes_the_running_task(private_redis, processes, make_order):
    order = make_order("delivering")
    worker = processes.start("worker", procfile_argv("worker", {}, supervised=False), role_env(private_redis))
    worker.wait_for_log("ready.")
    with transaction.atomic():
        Order.objects.select_for_update().get(pk=order.pk)  # the task blocks on this row, mid-task
        with app.connection_for_write(private_redis.url) as connection:
            eta_recompute.apply_async((order.pk,), connection=connection)
        wait_until(waiting_for_a_lock, timeout=30, what=f"the task in flight; log:\n{worker.log()}")
        worker.popen.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert worker.popen.poll() is None  # waiting for the task
    assert worker.popen.wait(40) == 0, worker.log()
    assert "Warm shutdown" in worker.log()
    assert TrackingEvent.objects.filter(order=order, kind="eta").count() == 1
    # Finished, so acknowledged: nothing left for a redelivery.
    assert redis.Redis.from_url(private_redis.url).hlen("unacked") == 0


CHILD = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("child: SIGTERM", flush=True), sys.exit(0)))
runs = pathlib.Path(sys.argv[1])
runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else "1")
print("child: up", flush=True)
if int(runs.read_text()) < 3:
    time.sleep(0.2)
    sys.exit(3)  # the first two runs crash
time.sleep(600)
"""


def supervised_child(processes, tmp_path):
    argv = [sys.executable, "deploy/supervise.py", sys.executable, "-c", CHILD, str(tmp_path / "runs")]
    return processes.start("supervise", argv, server_env())


def test_the_supervisor_restarts_a_child_that_exits_with_backoff_and_passes_sigterm_on_once(processes, tmp_path):
    supervisor = supervised_child(processes, tmp_path)
    supervisor.wait_for_log("child: up", count=3, timeout=30)
    log = supervisor.log()
    assert "exited with 3; restarting in 1 s" in log
    assert "exited with 3; restarting in 2 s" in log  # the backoff doubles
    supervisor.popen.send_signal(signal.SIGTERM)
    assert supervisor.popen.wait(20) == 0  # the child's exit code
    log = supervisor.log()
    assert log.count("child: SIGTERM") == 1  # passed on once
    assert log.count("child: up") == 3  # and nothing started after it


def test_a_sigkilled_supervisor_takes_its_child_with_it(processes, tmp_path):
    (tmp_path / "runs").write_text("5")  # no crashes: the child stays up
    supervisor = supervised_child(processes, tmp_path)
    supervisor.wait_for_log("child: up")
    [child] = children(supervisor.pid)
    supervisor.popen.kill()
    supervisor.popen.wait()
    wait_until(lambda: not _alive(child), timeout=10, what="the child to die with its supervisor")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_daphne_restarted_by_its_supervisor_has_its_clients_back(processes, make_order, customer):
    """The Procfile's ws line: Daphne stopped (SIGTERM, 1012) comes back under its supervisor, and so do clients."""
    import asyncio
    import json
    import os

    import websockets

    order = make_order("delivering")
    port = free_port()
    env = server_env(WS_PORT=str(port))
    supervisor = processes.start("ws", procfile_argv("ws", env), env)
    token = str(AccessToken.for_user(customer))
    url = f"ws://127.0.0.1:{port}/ws/orders/{order.pk}/"

    async def snapshot(ws) -> dict:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def scenario() -> tuple[int, float]:
        ws = await _connect(url, timeout=60)
        assert (await snapshot(ws))["type"] == "snapshot"
        [daphne] = children(supervisor.pid)
        signal_sent = time.monotonic()
        os.kill(daphne, signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        closed_at = time.monotonic()
        # Back for good: a socket that stays open (one opened on the old process while it was
        # stopping is dropped again, and the client reconnects once more).
        drops = []
        while True:
            back = await _connect(url, timeout=30)
            frame = await snapshot(back)
            assert (frame["type"], frame["version"]) == ("snapshot", order.version)
            try:
                await asyncio.wait_for(back.recv(), 3)
            except TimeoutError:
                break
            except websockets.ConnectionClosed as dropped:
                drops.append(dropped.rcvd.code if dropped.rcvd else None)
        back_after = time.monotonic() - closed_at - 3  # less the 3 s it was watched
        await back.close()
        print(f"\nFIGURES Daphne SIGTERM under its supervisor: closed {closed_at - signal_sent:.2f} s after the signal")
        print(f"FIGURES   with {closed.value.rcvd.code}; the client back for good {back_after:.1f} s after the close,")
        print(f"FIGURES   after {len(drops)} more drops {drops} (sockets opened on the stopping process)")
        return closed.value.rcvd.code, back_after

    code, back_after = asyncio.run(scenario())
    assert code == 1012
    # One Daphne restarting: the supervisor's 1 s, then its start-up (generous for a loaded machine).
    assert back_after < 30
    assert "restarting in 1 s" in supervisor.log()


async def _connect(url: str, *, timeout: float):
    import asyncio
    import random

    import websockets

    deadline, delay = time.monotonic() + timeout, 0.25
    while True:
        try:
            return await websockets.connect(url)
        except (OSError, websockets.WebSocketException):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)
