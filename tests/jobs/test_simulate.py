"""The simulator drives a real Daphne through the HTTP API with JWT, like real clients."""

import itertools
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from orders.models import Order, OrderStatus
from tests.conftest import order_for
from tracking.management.simulation import TICK_SECONDS, Incidents, trip_plan
from tracking.models import Rider, TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_simulated_clients_order_pick_dispatch_ride_and_deliver(daphne_server):
    call_command("seed_demo", "--riders", "2", "--customers", "2", stdout=StringIO())
    leftover = order_for(
        User.objects.get(username="customer1"),
        status="delivering",
        rider=User.objects.get(username="rider1"),
        operator=User.objects.get(username="warehouse1"),
    )
    out = StringIO()

    call_command(
        "simulate",
        "--riders=2",
        "--customers=2",
        "--orders=2",
        "--speed=200",
        "--seed=5",
        "--stall-chance=0",
        "--detour-chance=0",
        "--offline-chance=1",
        "--offline-seconds=1",
        f"--base-url={daphne_server.url}",
        "--wait=10",
        stdout=out,
    )

    log = out.getvalue()
    assert "done: 2 orders" in log
    assert "back online: uploading" in log  # an offline gap went up as one batch
    # An order a stopped run left on the road is handed over first.
    assert f"rider1 handed over order {leftover.pk[:8]} left from an earlier run" in log
    assert Order.objects.get(pk=leftover.pk).status == OrderStatus.COMPLETED
    orders = list(Order.objects.exclude(pk=leftover.pk).order_by("create_time"))
    assert [order.status for order in orders] == [OrderStatus.COMPLETED, OrderStatus.COMPLETED]
    for order in orders:
        stages = list(TrackingEvent.objects.filter(order=order, kind="stage").values_list("stage", flat=True))
        assert stages == ["picking", "picked", "packed"]
        assert TrackingEvent.objects.filter(order=order, kind="location").count() > 5
        assert order.rider.username in {"rider1", "rider2"}
    # Riders rode back toward the warehouse and the ops map knows where they are.
    assert Rider.objects.filter(user__username__in=["rider1", "rider2"], last_recorded_at__isnull=False).count() == 2


def test_a_trip_plan_is_street_like_and_reaches_the_door():
    import random

    from tracking.management.simulation import to_local

    warehouse, destination = (31.188, 121.437), (31.2, 121.45)
    plan = trip_plan(
        start=warehouse,
        destination=destination,
        hour=14,
        rng=random.Random(3),
        incidents=Incidents(stall_chance=0, detour_chance=0, offline_chance=0),
    )

    assert [p.at_s for p in plan.points[:3]] == [0.0, TICK_SECONDS, 2 * TICK_SECONDS]
    assert plan.points[0].lat == pytest.approx(warehouse[0])
    arrived = [p for p in plan.points if p.at_s >= plan.arrive_s]
    assert arrived
    assert all(abs(to_local(destination, (p.lat, p.lon))[0]) < 5 for p in arrived)
    # Manhattan legs: between consecutive points the rider mostly moves along one axis.
    moving = [p for p in plan.points if p.at_s < plan.arrive_s]
    one_axis = 0
    for before, after in itertools.pairwise(moving):
        dx, dy = to_local((before.lat, before.lon), (after.lat, after.lon))
        one_axis += min(abs(dx), abs(dy)) < 1
    assert one_axis >= len(moving) * 0.6
    assert plan.deliver_s - plan.arrive_s >= 60


def test_forced_incidents_are_long_enough_to_raise_their_alerts():
    import random

    plan = trip_plan(
        start=(31.188, 121.437),
        destination=(31.215, 121.437),  # 3 km north
        hour=14,
        rng=random.Random(1),
        speed=5,
        incidents=Incidents(stall_chance=0, detour_chance=0, offline_chance=0),
        force=frozenset({"stall", "offline"}),
    )

    assert sorted(plan.incidents) == ["offline", "stall"]
    offline = [p.at_s for p in plan.points if p.offline]
    # Simulated seconds / speed = wall-clock seconds the server sees.
    assert (offline[-1] - offline[0]) / 5 >= 180
    assert plan.arrive_s / 5 >= 300  # the stall (300 s of wall clock) is inside the ride


def test_the_simulator_leaves_rider1_to_a_visitor_when_told_to_start_at_rider2(daphne_server):
    call_command("seed_demo", "--riders", "2", "--customers", "1", stdout=StringIO())
    visitors = order_for(
        User.objects.get(username="customer1"),
        status="delivering",
        rider=User.objects.get(username="rider1"),
        operator=User.objects.get(username="warehouse1"),
    )
    out = StringIO()

    call_command(
        "simulate",
        "--riders=1",
        "--first-rider=2",
        "--customers=1",
        "--orders=1",
        "--speed=300",
        "--seed=3",
        "--stall-chance=0",
        "--detour-chance=0",
        "--offline-chance=0",
        f"--base-url={daphne_server.url}",
        "--wait=10",
        stdout=out,
    )

    assert "done: 1 orders" in out.getvalue()
    simulated = Order.objects.exclude(pk=visitors.pk).get()
    assert (simulated.status, simulated.rider.username) == (OrderStatus.COMPLETED, "rider2")
    # The visitor's order and rider1 are untouched: still delivering, no simulated points.
    assert Order.objects.get(pk=visitors.pk).status == OrderStatus.DELIVERING
    assert TrackingEvent.objects.filter(order=visitors, kind="location").count() == 0
