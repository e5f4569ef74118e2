"""Domain gauges read at scrape time: orders by status, open alerts by kind, riders online.

Registered with the project's metrics (xiaoxiang.metrics.collector_register)
in TrackingConfig.ready(). Three grouped COUNTs per scrape: cheap at a 15 s
scrape interval, and always the database's truth rather than a counter that
drifts when a process dies.
"""

import logging

from django.db import DatabaseError
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orders.models import Order, OrderStatus
from tracking.models import Alert, AlertKind, Rider

logger = logging.getLogger(__name__)


class DomainCollector(Collector):
    def collect(self):
        orders = GaugeMetricFamily("xiaoxiang_orders", "Orders by status.", labels=["status"])
        alerts = GaugeMetricFamily("xiaoxiang_alerts_open", "Open alerts by kind.", labels=["kind"])
        riders = GaugeMetricFamily("xiaoxiang_riders_online", "Riders marked online.")
        try:
            by_status = dict(Order.objects.order_by().values_list("status").annotate(n=Count("pk")))
            by_kind = dict(
                Alert.objects.filter(resolved_at__isnull=True).order_by().values_list("kind").annotate(n=Count("pk"))
            )
            online = Rider.objects.filter(online=True).count()
        except DatabaseError:
            # A scrape during a database outage still returns the process metrics.
            logger.warning("domain metrics unavailable", exc_info=True)
            return
        for status in OrderStatus:
            orders.add_metric([status.name.lower()], by_status.get(status.value, 0))
        for kind in AlertKind:
            alerts.add_metric([kind.value], by_kind.get(kind.value, 0))
        riders.add_metric([], online)
        yield orders
        yield alerts
        yield riders

    def describe(self):
        # Described without a query: registering must not touch the database.
        return [
            GaugeMetricFamily("xiaoxiang_orders", "Orders by status.", labels=["status"]),
            GaugeMetricFamily("xiaoxiang_alerts_open", "Open alerts by kind.", labels=["kind"]),
            GaugeMetricFamily("xiaoxiang_riders_online", "Riders marked online."),
        ]
