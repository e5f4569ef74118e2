"""`simulate --history` writes completed deliveries; `eta_backtest` on them beats the naive baseline."""

import re
from io import StringIO

import pytest
from django.core.management import call_command

from notifications.models import Notification
from orders.models import Order, OrderStatus
from tracking.models import Alert, EtaFit, TrackingEvent

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_history_then_backtest_beats_the_baseline(settings):
    # 80 deliveries, 37 minutes apart: two days, so every hour of the day is in the training part.
    settings.TRACKING_JOBS_ENABLED = True  # history writing must suspend the jobs itself
    run("seed_demo", "--riders", "1", "--customers", "1")

    output = run("simulate", "--history", "80")

    completed = Order.objects.filter(status=OrderStatus.COMPLETED)
    assert completed.count() == 80
    assert "80 completed deliveries; ETA model fitted on 80" in output
    # The past is written through the services: every order has its full timeline and track ...
    first = completed.order_by("delivered_at").first()
    kinds = list(TrackingEvent.objects.filter(order=first).values_list("kind", flat=True).distinct())
    assert sorted(set(kinds)) == ["location", "stage", "status"]
    assert first.delivered_at > first.dispatched_at > first.paid_at > first.create_time
    # ... and no job ran for it: no ETA events, alerts or ETA notifications for history.
    assert not TrackingEvent.objects.filter(kind__in=["eta", "alert"]).exists()
    assert not Alert.objects.exists()
    assert not Notification.objects.filter(kind__in=["order.eta", "order.late"]).exists()
    assert EtaFit.objects.get().deliveries == 80
    # The demo accounts' bells start quiet: the past's notifications are read.
    assert Notification.objects.filter(kind="order.dispatched").count() == 80
    assert not Notification.objects.filter(read_at__isnull=True).exists()

    report = run("eta_backtest", "--check")

    assert "trained on 64 deliveries, tested on 16 held-out deliveries" in report
    model = re.search(r"learned model\s+([\d.]+) min\s+([\d.]+) min", report)
    baseline = re.search(r"baseline \(15 km/h straight line\)\s+([\d.]+) min\s+([\d.]+) min", report)
    model_mean, model_p90 = float(model[1]), float(model[2])
    baseline_mean, baseline_p90 = float(baseline[1]), float(baseline[2])
    assert model_mean < baseline_mean
    assert model_p90 < baseline_p90
    assert "The learned model beats the baseline." in report


def test_history_is_topped_up_not_duplicated():
    run("seed_demo", "--riders", "1", "--customers", "1")
    run("simulate", "--history", "6")

    output = run("simulate", "--history", "6")

    assert Order.objects.filter(status=OrderStatus.COMPLETED).count() == 6
    assert "Writing" not in output


def test_backtest_without_history_says_how_to_get_some(db):
    with pytest.raises(SystemExit):
        call_command("eta_backtest", stdout=StringIO(), stderr=StringIO())
