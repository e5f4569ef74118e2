"""Domain gauges read at scrape time: orders by status, open alerts by kind, riders online, ETA error.

Registered with the project's metrics (xiaoxiang.metrics.collector_register)
in TrackingConfig.ready(). Three grouped COUNTs per scrape: cheap at a 15 s
scrape interval, and always the database's truth rather than a counter that
drifts when a process dies.
"""

import datetime as dt
import logging
import statistics

from django.db import DatabaseError
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orders.models import Order, OrderStatus
from tracking.models import Alert, AlertKind, EventKind, Rider, TrackingEvent

logger = logging.getLogger(__name__)

# ETA error is measured over the deliveries of this window (at most ETA_ERROR_SAMPLE of them).
ETA_ERROR_WINDOW = dt.timedelta(hours=24)
ETA_ERROR_SAMPLE = 500


def eta_errors_recent() -> list[float]:
    """Seconds each recent delivery came after (+) or before (-) the ETA predicted at dispatch.

    The prediction at dispatch is the first `eta` event recorded from the
    dispatch on: dispatch recomputes the ETA at once (tracking.tasks).
    """
    predicted_at_dispatch = (
        TrackingEvent.objects.filter(
            order=OuterRef("pk"), kind=EventKind.ETA, create_time__gte=OuterRef("dispatched_at")
        )
        .order_by("version")
        .values("data__eta")[:1]
    )
    rows = (
        Order.objects.filter(
            status=OrderStatus.COMPLETED,
            dispatched_at__isnull=False,
            delivered_at__gte=timezone.now() - ETA_ERROR_WINDOW,
        )
        .annotate(predicted=Subquery(predicted_at_dispatch))
        .exclude(predicted=None)
        .order_by("-delivered_at")
        .values_list("delivered_at", "predicted")[:ETA_ERROR_SAMPLE]
    )
    return [(delivered_at - dt.datetime.fromisoformat(predicted)).total_seconds() for delivered_at, predicted in rows]


class DomainCollector(Collector):
    def collect(self):
        orders = GaugeMetricFamily("xiaoxiang_orders", "Orders by status.", labels=["status"])
        alerts = GaugeMetricFamily("xiaoxiang_alerts_open", "Open alerts by kind.", labels=["kind"])
        riders = GaugeMetricFamily("xiaoxiang_riders_online", "Riders marked online.")
        eta_error, eta_measured = _eta_families()
        try:
            by_status = dict(Order.objects.order_by().values_list("status").annotate(n=Count("pk")))
            by_kind = dict(
                Alert.objects.filter(resolved_at__isnull=True).order_by().values_list("kind").annotate(n=Count("pk"))
            )
            online = Rider.objects.filter(online=True).count()
            errors = eta_errors_recent()
        except DatabaseError:
            # A scrape during a database outage still returns the process metrics.
            logger.warning("domain metrics unavailable", exc_info=True)
            return
        for status in OrderStatus:
            orders.add_metric([status.name.lower()], by_status.get(status.value, 0))
        for kind in AlertKind:
            alerts.add_metric([kind.value], by_kind.get(kind.value, 0))
        riders.add_metric([], online)
        eta_measured.add_metric([], len(errors))
        if errors:
            absolute = sorted(abs(error) for error in errors)
            eta_error.add_metric(["0.5"], statistics.median(absolute))
            eta_error.add_metric(["0.9"], absolute[min(len(absolute) - 1, int(0.9 * len(absolute)))])
        yield orders
        yield alerts
        yield riders
        yield eta_error
        yield eta_measured

    def describe(self):
        # Described without a query: registering must not touch the database.
        return [
            GaugeMetricFamily("xiaoxiang_orders", "Orders by status.", labels=["status"]),
            GaugeMetricFamily("xiaoxiang_alerts_open", "Open alerts by kind.", labels=["kind"]),
            GaugeMetricFamily("xiaoxiang_riders_online", "Riders marked online."),
            *_eta_families(),
        ]


def _eta_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "xiaoxiang_eta_error_seconds",
            "Absolute error of the ETA predicted at dispatch, over the last 24 h of deliveries, by quantile.",
            labels=["quantile"],
        ),
        GaugeMetricFamily("xiaoxiang_eta_deliveries_measured", "Deliveries of the last 24 h with an ETA at dispatch."),
    )
