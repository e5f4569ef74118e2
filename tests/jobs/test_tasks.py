"""The ETA and alert tasks, called as functions: what they write, that they are idempotent,
and that services enqueue them only after commit."""

import datetime as dt
import threading
from unittest import mock

import pytest
from django.core import mail
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from notifications.models import Notification
from orders import services
from orders.models import Order
from tests.jobs.conftest import HOME, WAREHOUSE, backdate, ingest, toward_home
from tracking import eta, tasks
from tracking.alert_services import order_alerts_evaluate
from tracking.eta_services import eta_model_refit, eta_params_current
from tracking.models import Alert, EtaFit, Rider, TrackingEvent
from tracking.ops import ops_alert_payload
from xiaoxiang.celery import app, embedded_beat_start

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager(settings):
    """Tasks that enqueue others (sweeps) run them in-process here, even with REDIS_URL set.

    Through the Django settings Celery reads its configuration from: Celery 5.6 lets them win
    over a value set on app.conf at run time."""
    settings.CELERY_TASK_ALWAYS_EAGER = settings.CELERY_TASK_EAGER_PROPAGATES = True


def minutes_ago(minutes: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(minutes=minutes)


def events(order: Order, kind: str) -> list[TrackingEvent]:
    return list(TrackingEvent.objects.filter(order=order, kind=kind).order_by("version"))


# --- ETA ---------------------------------------------------------------------


def test_eta_recompute_stores_the_eta_and_records_one_eta_event(make_order, rider):
    order = make_order("delivering")
    ingest(rider, [(toward_home(0.5), timezone.now())])
    before = Order.objects.get(pk=order.pk).version

    assert tasks.eta_recompute(order.pk) is True

    order.refresh_from_db()
    [event] = events(order, "eta")
    assert order.version == before + 1 == event.version
    assert event.data == {
        "eta": order.eta.isoformat(),
        "previous_eta": None,
        "change_seconds": None,
        "told_eta": order.eta.isoformat(),
    }
    assert event.operator_type == 5  # system
    assert order.eta > timezone.now()


def test_eta_recompute_twice_changes_nothing_the_second_time(make_order, rider):
    order = make_order("delivering")
    ingest(rider, [(toward_home(0.5), timezone.now())])
    tasks.eta_recompute(order.pk)
    order.refresh_from_db()
    stored = (order.eta, order.version)

    assert tasks.eta_recompute(order.pk) is False

    order.refresh_from_db()
    assert (order.eta, order.version) == stored
    assert len(events(order, "eta")) == 1


def test_a_small_move_is_not_recorded_and_a_big_one_notifies_the_customer(make_order, rider, customer):
    order = make_order("delivering")
    ingest(rider, [(toward_home(0.2), timezone.now())])
    tasks.eta_recompute(order.pk)
    order.refresh_from_db()
    first = order.eta

    # 10 seconds of difference: below ETA_MIN_CHANGE_SECONDS.
    with mock.patch("tracking.eta_services.order_eta_predict", return_value=first + dt.timedelta(seconds=10)):
        assert tasks.eta_recompute(order.pk) is False
    with mock.patch("tracking.eta_services.order_eta_predict", return_value=first + dt.timedelta(minutes=2)):
        assert tasks.eta_recompute(order.pk) is True
    assert Notification.objects.filter(order=order, kind="order.eta").count() == 0
    with mock.patch("tracking.eta_services.order_eta_predict", return_value=first + dt.timedelta(minutes=12)):
        assert tasks.eta_recompute(order.pk) is True

    order.refresh_from_db()
    assert order.eta == first + dt.timedelta(minutes=12)
    assert [e.data["change_seconds"] for e in events(order, "eta")] == [None, 120, 600]
    [notification] = Notification.objects.filter(order=order, kind="order.eta")
    assert notification.user == customer
    assert notification.title.startswith("预计送达时间推迟至 ")
    assert notification.body.endswith("推迟了约 12 分钟。")


def test_a_slow_drift_of_small_moves_is_told_once_it_adds_up(make_order, rider):
    order = make_order("delivering")
    ingest(rider, [(toward_home(0.2), timezone.now())])
    tasks.eta_recompute(order.pk)
    first = Order.objects.get(pk=order.pk).eta

    for minutes in (2, 4, 6, 8):  # every step is 2 minutes: none alone is news
        with mock.patch("tracking.eta_services.order_eta_predict", return_value=first + dt.timedelta(minutes=minutes)):
            tasks.eta_recompute(order.pk)

    notifications = list(Notification.objects.filter(order=order, kind="order.eta"))
    assert [n.body.endswith("推迟了约 6 分钟。") for n in notifications] == [True]
    assert events(order, "eta")[-1].data["told_eta"] == (first + dt.timedelta(minutes=6)).isoformat()


def test_a_paid_order_eta_includes_the_rest_of_the_warehouse_time(make_order):
    order = make_order("picking")

    tasks.eta_recompute(order.pk)

    order.refresh_from_db()
    picking_event = TrackingEvent.objects.get(order=order, kind="stage", stage="picking")
    expected = eta.eta_predict_paid(
        eta.EtaParams(),
        now=timezone.now(),
        destination=HOME,
        warehouse=WAREHOUSE,
        stage="picking",
        phase_started_at=picking_event.recorded_at,
        tz=timezone.get_current_timezone(),
    )
    assert abs((order.eta - expected).total_seconds()) < 5
    # More than the ride alone: the picking, packing and dispatch still ahead.
    assert (order.eta - timezone.now()).total_seconds() > 300 + 120 + 90 - 5


@pytest.mark.parametrize("status", ["pending", "completed", "cancelled"])
def test_no_eta_for_orders_not_paid_or_on_the_road(make_order, status):
    order = make_order(status)
    version = order.version

    assert tasks.eta_recompute(order.pk) is False

    order.refresh_from_db()
    assert (order.eta, order.version) == (None, version)


def test_eta_recompute_of_a_missing_order_is_a_no_op():
    assert tasks.eta_recompute("0" * 32) is False


# --- the model ---------------------------------------------------------------


def test_refit_with_no_history_keeps_the_defaults(db):
    fit_id = tasks.eta_refit()

    fit = EtaFit.objects.get(pk=fit_id)
    assert (fit.deliveries, fit.samples, fit.params["pace_s_per_m"]) == (0, 0, {})
    assert eta_params_current() == eta.EtaParams()


def test_refit_makes_the_newest_fit_current(db, django_capture_on_commit_callbacks):
    EtaFit.objects.create(
        fitted_at=timezone.now() - dt.timedelta(hours=1),
        deliveries=50,
        samples=900,
        params={"pace_s_per_m": {"all": 0.5}, "handover_seconds": 10},
    )
    assert eta_params_current().pace_s_per_m == {"all": 0.5}

    with django_capture_on_commit_callbacks(execute=True):
        eta_model_refit()  # cache dropped on commit
    assert eta_params_current() == eta.EtaParams()


# --- alerts --------------------------------------------------------------------


def stalled(rider, order, *, minutes: float):
    """The rider rode a bit, then stood still for `minutes` up to now."""
    spot = toward_home(0.3)
    ingest(rider, [(toward_home(0.1), minutes_ago(minutes + 1)), (toward_home(0.2), minutes_ago(minutes + 0.5))])
    steps = int(minutes * 4)
    ingest(rider, [(spot, minutes_ago(minutes - step / 4)) for step in range(steps + 1)])


def test_a_stalled_rider_raises_one_stall_alert_with_an_event_and_a_live_push(make_order, rider, staff):
    order = backdate(make_order("delivering"), minutes=15)
    stalled(rider, order, minutes=5)

    with (
        mock.patch("tracking.alert_services.alert_publish") as publish,
        transaction.atomic(),
    ):
        changed = tasks.alerts_evaluate(order.pk)

    assert changed == {"stall": "opened"}
    [alert] = Alert.objects.filter(order=order)
    assert (alert.kind, alert.rider, alert.resolved_at) == ("stall", rider, None)
    assert alert.message == "骑手已在同一位置停留 5 分钟"
    [event] = events(order, "alert")
    assert event.data["alert"]["id"] == alert.pk
    assert event.data["alert"]["state"] == "open"
    assert Order.objects.get(pk=order.pk).version == event.version
    publish.assert_called_once_with(ops_alert_payload(alert))


def test_a_stall_is_seen_however_often_the_phone_posts(make_order, rider):
    order = backdate(make_order("delivering"), minutes=15)
    spot = toward_home(0.3)
    # A point every 3 seconds for 5 minutes: 100 points, all in one spot.
    ingest(rider, [(spot, minutes_ago(5 - step / 20)) for step in range(101)])

    assert tasks.alerts_evaluate(order.pk) == {"stall": "opened"}


def test_evaluating_again_does_not_raise_it_twice(make_order, rider):
    order = backdate(make_order("delivering"), minutes=15)
    stalled(rider, order, minutes=5)
    tasks.alerts_evaluate(order.pk)
    version = Order.objects.get(pk=order.pk).version

    assert tasks.alerts_evaluate(order.pk) == {}

    assert Alert.objects.filter(order=order).count() == 1
    assert Order.objects.get(pk=order.pk).version == version


def test_the_stall_resolves_when_the_rider_moves_on(make_order, rider):
    order = backdate(make_order("delivering"), minutes=15)
    stalled(rider, order, minutes=5)
    tasks.alerts_evaluate(order.pk)

    # 360 m on in 30 s (an instant jump would be flagged as impossible, tracking/quality.py).
    ingest(rider, [(toward_home(0.5), timezone.now() + dt.timedelta(seconds=30))])
    assert tasks.alerts_evaluate(order.pk) == {"stall": "resolved"}

    [alert] = Alert.objects.filter(order=order)
    assert alert.resolved_at is not None
    assert [e.data["alert"]["state"] for e in events(order, "alert")] == ["open", "resolved"]
    # Resolved once: a second evaluation finds nothing to do.
    assert tasks.alerts_evaluate(order.pk) == {}


def test_the_insert_is_the_claim_a_second_open_finds_it_taken(make_order, rider):
    from tracking.alerts import Finding

    order = make_order("delivering")
    finding = Finding("stall", True, "骑手已在同一位置停留 5 分钟", {})
    from tracking.alert_services import alert_open

    assert alert_open(order_id=order.pk, finding=finding) is not None
    assert alert_open(order_id=order.pk, finding=finding) is None

    assert Alert.objects.filter(order=order, kind="stall").count() == 1
    assert len(events(order, "alert")) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_evaluating_at_once_raise_exactly_one_alert(make_order, rider):
    order = backdate(make_order("delivering"), minutes=15)
    stalled(rider, order, minutes=5)
    barrier = threading.Barrier(4)
    results = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(order_alerts_evaluate(order_id=order.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results, key=len) == [{}, {}, {}, {"stall": "opened"}]
    assert Alert.objects.filter(order=order).count() == 1
    assert TrackingEvent.objects.filter(order=order, kind="alert").count() == 1


def test_going_off_route_raises_a_deviation(make_order, rider):
    order = backdate(make_order("delivering"), minutes=15)
    # Toward home, then back toward the warehouse for five points.
    fractions = [0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 0.1]
    ingest(rider, [(toward_home(f), minutes_ago(8 - index * 0.25)) for index, f in enumerate(fractions)])

    assert tasks.alerts_evaluate(order.pk) == {"deviation": "opened"}
    assert Alert.objects.get(order=order).data["reason"] == "away"


def test_a_late_order_tells_the_customer_once_by_notification_and_mail(make_order, customer):
    order = make_order("delivering")
    Order.objects.filter(pk=order.pk).update(promised_at=minutes_ago(2))

    with mock.patch("tracking.alert_services.alert_publish"):
        with transaction.atomic():
            assert tasks.alerts_evaluate(order.pk)["late"] == "opened"
        tasks.alerts_evaluate(order.pk)

    [notification] = Notification.objects.filter(order=order, kind="order.late")
    assert notification.user == customer
    assert notification.title == "订单可能晚于承诺时间送达"
    assert Alert.objects.filter(order=order, kind="late").count() == 1


def test_a_late_alert_that_opens_again_does_not_tell_the_customer_twice(make_order):
    order = make_order("paid")
    Order.objects.filter(pk=order.pk).update(promised_at=timezone.now() + dt.timedelta(minutes=30))
    late, on_time = timezone.now() + dt.timedelta(minutes=40), timezone.now() + dt.timedelta(minutes=20)

    for eta_at in (late, on_time, late):
        Order.objects.filter(pk=order.pk).update(eta=eta_at)
        tasks.alerts_evaluate(order.pk)

    alerts = Alert.objects.filter(order=order).order_by("opened_at")
    assert [(alert.kind, alert.is_open) for alert in alerts] == [("late", False), ("late", True)]
    assert Notification.objects.filter(order=order, kind="order.late").count() == 1


def test_late_mail_goes_out_only_after_commit(make_order, customer, django_capture_on_commit_callbacks):
    order = make_order("delivering")
    Order.objects.filter(pk=order.pk).update(promised_at=minutes_ago(2))

    with django_capture_on_commit_callbacks(execute=True):
        tasks.alerts_evaluate(order.pk)
        assert mail.outbox == []

    assert [message.to for message in mail.outbox] == [[customer.email]]


def test_a_predicted_late_eta_raises_late_for_a_paid_order(make_order):
    order = make_order("packed")
    Order.objects.filter(pk=order.pk).update(promised_at=timezone.now() + dt.timedelta(minutes=5))

    tasks.eta_recompute(order.pk)  # the ride alone takes longer than 5 minutes

    alert = Alert.objects.get(order=order)
    assert (alert.kind, alert.data["reason"]) == ("late", "predicted")


def test_a_silent_rider_goes_offline_and_comes_back(make_order, rider):
    order = backdate(make_order("delivering"), minutes=15)
    Rider.objects.filter(user=rider).update(last_seen_at=minutes_ago(4))

    assert tasks.alerts_sweep() == 1  # eager: the sweep ran alerts_evaluate for the order
    assert Alert.objects.get(order=order).kind == "offline"

    # The offline batch arrives: the rider is heard again.
    ingest(rider, [(toward_home(0.1), minutes_ago(3)), (toward_home(0.2), minutes_ago(2))])
    assert tasks.alerts_evaluate(order.pk) == {"offline": "resolved"}


def test_delivery_resolves_every_open_alert(make_order, rider):
    order = backdate(make_order("delivering"), minutes=15)
    stalled(rider, order, minutes=5)
    tasks.alerts_evaluate(order.pk)
    services.order_mark_delivered(order_id=order.pk, rider=rider)

    assert tasks.alerts_sweep() == 1  # the order with the open alert
    assert Alert.objects.get(order=order).resolved_at is not None


def test_sweeps_visit_open_orders(make_order):
    paid = make_order("paid")
    make_order("pending")

    assert tasks.eta_sweep() == 1
    assert Order.objects.get(pk=paid.pk).eta is not None


# --- enqueueing ------------------------------------------------------------------


def test_ingest_enqueues_only_on_commit(jobs_on, make_order, rider, django_capture_on_commit_callbacks):
    order = make_order("delivering")
    with (
        mock.patch.object(tasks.alerts_evaluate, "delay") as alerts_delay,
        mock.patch.object(tasks.eta_recompute, "apply_async") as eta_async,
    ):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            ingest(rider, [(toward_home(0.1), timezone.now())])
            assert eta_async.call_count == 0  # not before commit
        # The ETA task evaluates the alerts too, at the end of the debounce window.
        assert eta_async.call_args_list == [mock.call((order.pk,), countdown=3)]
        assert alerts_delay.call_count == 0
    assert len(callbacks) >= 1


def test_points_debounce_the_eta_and_its_alerts_per_order(
    jobs_on, make_order, rider, other_rider, django_capture_on_commit_callbacks
):
    order = make_order("delivering")
    other = make_order("delivering", assigned=other_rider)
    with (
        mock.patch.object(tasks.alerts_evaluate, "delay") as alerts_delay,
        mock.patch.object(tasks.eta_recompute, "apply_async") as eta_async,
    ):
        for step in range(5):
            with django_capture_on_commit_callbacks(execute=True):
                ingest(rider, [(toward_home(0.1 + step / 100), timezone.now())])
        with django_capture_on_commit_callbacks(execute=True):
            ingest(other_rider, [(toward_home(0.1), timezone.now())])
    assert eta_async.call_args_list == [mock.call((order.pk,), countdown=3), mock.call((other.pk,), countdown=3)]
    assert alerts_delay.call_count == 0


def test_status_changes_recompute_at_once(jobs_on, make_order, customer, django_capture_on_commit_callbacks):
    order = make_order("pending")
    with mock.patch.object(tasks.eta_recompute, "delay") as eta_delay:
        with django_capture_on_commit_callbacks(execute=True):
            services.order_pay(order_id=order.pk, customer=customer)
        eta_delay.assert_called_once_with(order.pk)


def test_a_rolled_back_write_enqueues_nothing(jobs_on, make_order, rider, django_capture_on_commit_callbacks):
    make_order("delivering")
    with (
        mock.patch.object(tasks.eta_recompute, "apply_async") as eta_async,
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        ingest(rider, [(toward_home(0.1), timezone.now())])
        raise RuntimeError("boom")
    assert eta_async.call_count == 0


def test_with_jobs_off_nothing_is_enqueued(make_order, rider, django_capture_on_commit_callbacks):
    make_order("delivering")
    with (
        mock.patch.object(tasks.eta_recompute, "apply_async") as eta_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        ingest(rider, [(toward_home(0.1), timezone.now())])
    assert eta_async.call_count == 0


def test_eager_end_to_end_points_produce_an_eta(jobs_on, make_order, rider, django_capture_on_commit_callbacks):
    order = make_order("delivering")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(rider, [(toward_home(0.1), timezone.now())])
    assert Order.objects.get(pk=order.pk).eta is not None


def test_a_broken_broker_never_fails_the_committed_write(
    jobs_on, make_order, rider, django_capture_on_commit_callbacks
):
    order = make_order("delivering")
    with (
        mock.patch.object(tasks.eta_recompute, "apply_async", side_effect=OperationalError("broker down")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        result = ingest(rider, [(toward_home(0.1), timezone.now())])
    assert result.accepted == 1
    assert TrackingEvent.objects.filter(order=order, kind="location").count() == 1


# --- reliability settings ----------------------------------------------------------


@pytest.mark.parametrize(
    "task", [tasks.eta_recompute, tasks.alerts_evaluate, tasks.eta_sweep, tasks.alerts_sweep, tasks.eta_refit]
)
def test_tasks_have_time_limits_and_retry_only_transient_errors(task, settings):
    # Acknowledged late (redelivered if a worker dies) unless a run may outlast the visibility timeout.
    long_running = task.time_limit > settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert task.acks_late is task.reject_on_worker_lost is not long_running
    assert task.soft_time_limit < task.time_limit
    assert task.autoretry_for == tasks.TRANSIENT_ERRORS
    assert task.max_retries == 5


def test_a_transient_error_is_retried(make_order):
    order = make_order("paid")
    with (
        mock.patch("tracking.tasks.order_eta_refresh", side_effect=OperationalError("db restarting")),
        mock.patch.object(tasks.eta_recompute, "retry", side_effect=RuntimeError("retry scheduled")) as retry,
        pytest.raises(RuntimeError, match="retry scheduled"),
    ):
        tasks.eta_recompute.run(order.pk)
    assert isinstance(retry.call_args.kwargs["exc"], OperationalError)


def test_a_bug_is_not_retried(make_order):
    order = make_order("paid")
    with (
        mock.patch("tracking.tasks.order_eta_refresh", side_effect=ValueError("bug")),
        mock.patch.object(tasks.eta_recompute, "retry") as retry,
        pytest.raises(ValueError),
    ):
        tasks.eta_recompute.run(order.pk)
    retry.assert_not_called()


def test_beat_schedule_names_registered_tasks():
    schedule = app.conf.beat_schedule
    assert {entry["task"] for entry in schedule.values()} == {
        "tracking.alerts_sweep",
        "tracking.eta_sweep",
        "tracking.eta_refit",
        "tracking.retention_apply",
    }
    for entry in schedule.values():
        assert entry["task"] in app.tasks


def test_the_embedded_timer_never_starts_in_tests():
    assert embedded_beat_start() is False
