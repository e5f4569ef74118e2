"""The Celery worker survives its broker going away, and a worker killed outright loses no job.

Every order here is delivering, dispatched ten minutes ago by a rider never
heard from: its ETA job (tracking.eta_recompute) stores an ETA and opens an
offline alert, so "the job was computed" is an `eta` and an `alert` event in
the order's history, read from PostgreSQL.

Celery 5.7.0's worker died on the first of these (`Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")`): after a
connection loss its consumer closed the connection again after collect(),
and kombu's Redis channel, whose first close had stopped at the dead socket,
then tried to restore the unacknowledged messages through a transport that
collect() had already detached. requirements.txt pins 5.6.3 until a fixed
release; this test is what a version bump must pass.
"""

import os
import signal
import time
import uuid

import httpx
import pytest
import redis
from django.db import transaction

from orders.models import Order
from tests.conftest import make_rider
from tests.faults.conftest import children, procfile_argv, role_env, wait_until, waiting_for_a_lock
from tests.jobs.conftest import backdate
from tests.live import free_port
from tracking.models import TrackingEvent
from tracking.tasks import eta_recompute
from xiaoxiang.celery import app

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 10
VISIBILITY_SECONDS = 20


def late_orders(make_order, groups, count: int) -> list[Order]:
    """Delivering orders, one rider each, dispatched ten minutes ago."""
    orders = []
    for _ in range(count):
        rider = make_rider(f"fault-rider-{uuid.uuid4().hex[:8]}", groups)
        orders.append(backdate(make_order("delivering", assigned=rider), minutes=10))
    return orders


def computed(orders: list[Order]) -> list[str]:
    """The orders whose ETA and alerts were computed: an eta and an alert event in the database."""
    kinds = {}
    for order_id, kind in TrackingEvent.objects.filter(order__in=orders, kind__in=["eta", "alert"]).values_list(
        "order_id", "kind"
    ):
        kinds.setdefault(order_id, set()).add(kind)
    return [order.pk for order in orders if kinds.get(order.pk) == {"eta", "alert"}]


def enqueue(broker_url: str, orders: list[Order], countdown: float) -> None:
    """Schedule each order's ETA job on the private broker, as tracking.jobs does after GPS points."""
    with app.connection_for_write(broker_url) as connection:
        for order in orders:
            eta_recompute.apply_async((order.pk,), countdown=countdown, connection=connection)


def test_the_worker_survives_a_broker_outage_and_computes_every_due_job(private_redis, processes, make_order, groups):
    due_during, due_after = late_orders(make_order, groups, 4), late_orders(make_order, groups, 4)
    # The held messages come back after the visibility timeout (120 s in production; the sweeps
    # recompute every open order sooner, see the test below).
    env = role_env(private_redis, CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_SECONDS))
    worker = processes.start("worker", procfile_argv("worker", {}, supervised=False), env)
    worker.wait_for_log("ready.")
    # Received and held unacknowledged until due: the messages kombu 5.7.0 failed to restore.
    enqueue(private_redis.url, due_during, countdown=4)
    enqueue(private_redis.url, due_after, countdown=OUTAGE_SECONDS + 6)
    worker.wait_for_log("received", count=8, timeout=30)
    assert redis.Redis.from_url(private_redis.url).hlen("unacked") == 8

    private_redis.kill()
    time.sleep(OUTAGE_SECONDS)
    private_redis.start()
    back = time.monotonic()

    orders = due_during + due_after
    wait_until(lambda: len(computed(orders)) == len(orders), timeout=90, what=f"every job; log:\n{worker.log()}")
    caught_up = time.monotonic() - back
    assert worker.popen.poll() is None, worker.log()
    assert "Unrecoverable error" not in worker.log()
    # And it consumes again: a job enqueued after the outage runs at once.
    [fresh] = late_orders(make_order, groups, 1)
    enqueued = time.monotonic()
    enqueue(private_redis.url, [fresh], countdown=0)
    wait_until(lambda: computed([fresh]), timeout=60, what=f"a job after the outage; log:\n{worker.log()}")
    print(f"\nFIGURES broker outage {OUTAGE_SECONDS} s, worker alive: {len(orders)} jobs due, {len(computed(orders))}")
    print(f"FIGURES   computed, the last {caught_up:.1f} s after Redis returned", end="")
    print(f" (visibility timeout {VISIBILITY_SECONDS} s);")
    print(f"FIGURES   a new job {time.monotonic() - enqueued:.1f} s after it was enqueued")


def test_jobs_redis_forgot_or_never_got_are_computed_by_the_sweeps(processes, make_order, groups, tmp_path):
    """Redis without persistence loses the queue; beat's sweeps recompute every open order once it is back."""
    from tests.faults.conftest import RedisServer

    broker = RedisServer(port=free_port(), data_dir=tmp_path, processes=processes, persistent=False)
    broker.start()
    env = role_env(broker, ETA_SWEEP_SECONDS="5", ALERT_SWEEP_SECONDS="5", CELERY_BEAT_SCHEDULE=str(tmp_path / "beat"))
    worker = processes.start("worker", procfile_argv("worker", env), env)
    beat = processes.start("beat", procfile_argv("beat", env), env)
    worker.wait_for_log("ready.")
    held = late_orders(make_order, groups, 3)
    enqueue(broker.url, held, countdown=60)  # lost with Redis's memory
    worker.wait_for_log("received", count=3, timeout=30)
    broker.kill()
    # Orders changed while the broker is down: their jobs could not be enqueued at all.
    never_enqueued = late_orders(make_order, groups, 3)
    time.sleep(OUTAGE_SECONDS)
    broker.start()
    back = time.monotonic()
    orders = held + never_enqueued
    wait_until(
        lambda: len(computed(orders)) == len(orders),
        timeout=90,
        what=f"every job; worker:\n{worker.log()}\nbeat:\n{beat.log()}",
    )
    # Neither died: their supervisors never had to start them again.
    assert [worker.log().count("supervise: started"), beat.log().count("supervise: started")] == [1, 1]
    print(f"\nFIGURES broker outage {OUTAGE_SECONDS} s, Redis back empty: {len(orders)} jobs due (3 lost, 3 never")
    print(f"FIGURES   enqueued), {len(computed(orders))} computed by the sweeps,", end="")
    print(f" the last {time.monotonic() - back:.1f} s after")


def test_a_worker_killed_with_sigkill_is_restarted_and_loses_no_job(private_redis, processes, make_order, groups):
    """kill -9 of the whole worker (main process and pool) with jobs in flight and jobs held for later."""
    in_flight, held = late_orders(make_order, groups, 2), late_orders(make_order, groups, 4)
    # Redelivery of what the dead worker held waits for the visibility timeout (120 s in production).
    env = role_env(private_redis, CELERY_VISIBILITY_TIMEOUT="10")
    supervisor = processes.start("worker", procfile_argv("worker", {}), env)
    supervisor.wait_for_log("ready.")
    with transaction.atomic():
        # The orders' rows are locked here: their jobs block mid-task, in flight.
        list(Order.objects.select_for_update().filter(pk__in=[order.pk for order in in_flight]))
        enqueue(private_redis.url, held, countdown=6)
        supervisor.wait_for_log("received", count=len(held), timeout=30)
        enqueue(private_redis.url, in_flight, countdown=0)
        wait_until(lambda: waiting_for_a_lock() >= 2, timeout=30, what=f"jobs in flight; log:\n{supervisor.log()}")
        [worker_pid] = children(supervisor.pid)
        os.killpg(worker_pid, signal.SIGKILL)
        killed = time.monotonic()
        supervisor.wait_for_log("exited with -9")
    assert computed(in_flight + held) == []  # the dead worker finished nothing

    supervisor.wait_for_log("ready.", count=2, timeout=60)
    restarted = time.monotonic() - killed
    orders = in_flight + held
    wait_until(lambda: len(computed(orders)) == len(orders), timeout=90, what=f"every job; log:\n{supervisor.log()}")
    print(f"\nFIGURES worker kill -9: supervisor restarted it, ready {restarted:.1f}s after the kill;")
    print(f"FIGURES   {len(orders)} jobs due ({len(in_flight)} in flight), {len(computed(orders))} computed,")
    print(f"FIGURES   the last {time.monotonic() - killed:.1f}s after the kill (visibility timeout 10 s)")
    # Redelivery may run a job twice; it is idempotent: one ETA and one alert per order.
    assert TrackingEvent.objects.filter(order__in=orders, kind="alert").count() == len(orders)


def test_a_pool_process_killed_under_its_task_is_counted_and_the_task_runs_again(
    private_redis, processes, make_order, groups
):
    """kill -9 of the pool processes, one mid-task: the main process requeues the task and counts it (worker_lost)."""
    [order] = late_orders(make_order, groups, 1)
    port = free_port()
    env = role_env(private_redis, WORKER_METRICS_PORT=str(port), METRICS_TOKEN="fault-token")
    worker = processes.start("worker", procfile_argv("worker", {}, supervised=False), env)
    worker.wait_for_log("ready.")

    def lost() -> float:
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer fault-token"})
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in scrape.text.splitlines()
            if line.startswith("xiaoxiang_celery_tasks_total{") and 'outcome="worker_lost"' in line
        )

    assert lost() == 0
    with transaction.atomic():
        # The order's row is locked here: its job blocks mid-task in one pool process.
        list(Order.objects.select_for_update().filter(pk=order.pk))
        enqueue(private_redis.url, [order], countdown=0)
        wait_until(lambda: waiting_for_a_lock() >= 1, timeout=30, what=f"the job in flight; log:\n{worker.log()}")
        pool = children(worker.pid)
        assert len(pool) == 2, pool  # --concurrency=2: one runs the job, one is idle
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: lost() == 1, timeout=30, what=f"the lost task counted; log:\n{worker.log()}")
    # The lock gone, the requeued task runs again in another pool process.
    wait_until(lambda: computed([order]) == [order.pk], timeout=60, what=f"the job; log:\n{worker.log()}")
    assert worker.popen.poll() is None  # the main process lives on
    print(f"\nFIGURES pool process kill -9 mid-task: worker_lost counted {lost():g}, the job computed afterwards")
