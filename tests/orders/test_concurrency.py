"""Two writers holding the same version: exactly one wins (real threads, PostgreSQL row locks)."""

import threading

import pytest
from django.db import connections

from orders import services
from orders.models import Order
from tracking.models import TrackingEvent
from xiaoxiang.errors import Conflict

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(calls) -> list[object]:
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as error:  # noqa: BLE001  (the loser's Conflict is the result)
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_stage_reports_with_same_version_exactly_one_wins(make_order, operator):
    order = make_order("paid")
    version = order.version
    results = _race(
        [
            lambda: services.order_stage_report(
                order_id=order.id, operator=operator, stage="picking", expected_version=version
            ),
            lambda: services.order_stage_report(
                order_id=order.id, operator=operator, stage="picked", expected_version=version
            ),
        ]
    )
    winners = [r for r in results if isinstance(r, Order)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert (len(winners), len(losers)) == (1, 1)
    assert losers[0].version == version + 1
    order.refresh_from_db()
    assert order.version == version + 1
    assert order.stage == winners[0].stage
    assert TrackingEvent.objects.filter(order=order, version=version + 1).count() == 1
    assert TrackingEvent.objects.filter(order=order, version__gt=version + 1).count() == 0


def test_concurrent_pay_and_cancel_exactly_one_wins(make_order, customer):
    for _ in range(5):
        order = make_order("pending")
        results = _race(
            [
                lambda o=order: services.order_pay(order_id=o.id, customer=customer, expected_version=1),
                lambda o=order: services.order_cancel(order_id=o.id, actor=customer, expected_version=1),
            ]
        )
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "Order"]
        order.refresh_from_db()
        assert order.version == 2
        assert list(TrackingEvent.objects.filter(order=order).values_list("version", flat=True)) == [1, 2]


def test_many_writers_without_expected_version_serialise(make_order, operator):
    # Without expected_version the lock still serialises them: every stage is
    # applied at most once, versions stay contiguous.
    order = make_order("paid")
    results = _race(
        [
            lambda s=stage: services.order_stage_report(order_id=order.id, operator=operator, stage=s)
            for stage in ("picking", "picking", "picking", "picking")
        ]
    )
    assert sum(isinstance(r, Order) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == 3
    versions = list(TrackingEvent.objects.filter(order=order).order_by("version").values_list("version", flat=True))
    assert versions == list(range(1, len(versions) + 1))
