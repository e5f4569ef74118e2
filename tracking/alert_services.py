"""Alert writes: evaluate an order's conditions, open at most one alert per kind, resolve when clear."""

import datetime as dt
import logging
from dataclasses import replace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications.models import Notification
from notifications.services import notification_send
from orders.models import Order, OrderStatus
from tracking import alerts
from tracking.alerts import Finding, Thresholds
from tracking.eta import TrackPoint
from tracking.events import tracking_event_record
from tracking.models import Alert, AlertKind, EventKind, OperatorType, Rider, TrackingEvent
from tracking.ops import ops_alert_payload
from tracking.publish import alert_publish
from tracking.wire import alert_payload

logger = logging.getLogger(__name__)

# The rules look at the newest points: the stall window plus a margin, and at
# most this many (a phone may post far more often than every 15 s).
TRACK_WINDOW_MARGIN_SECONDS = 120
TRACK_WINDOW_MAX_POINTS = 1000


def alert_thresholds() -> Thresholds:
    return Thresholds(
        stall_seconds=settings.ALERT_STALL_SECONDS,
        stall_radius_m=settings.ALERT_STALL_RADIUS_M,
        away_points=settings.ALERT_DEVIATION_AWAY_POINTS,
        away_min_m=settings.ALERT_DEVIATION_AWAY_MIN_M,
        corridor_m=settings.ALERT_DEVIATION_CORRIDOR_M,
        offline_seconds=settings.ALERT_OFFLINE_SECONDS,
        late_grace_seconds=settings.ALERT_LATE_GRACE_SECONDS,
    )


def order_track_recent(*, order: Order, window_seconds: float) -> list[TrackPoint]:
    """The ride's points of the last `window_seconds` before its newest point, oldest first (none flagged)."""
    ride = TrackingEvent.objects.for_order(order).positions().filter(recorded_at__gte=order.dispatched_at)
    newest = ride.order_by("-recorded_at").values_list("recorded_at", flat=True).first()
    if newest is None:
        return []
    rows = (
        ride.filter(recorded_at__gte=newest - dt.timedelta(seconds=window_seconds))
        .order_by("-recorded_at", "-version")
        .values_list("latitude", "longitude", "recorded_at")[:TRACK_WINDOW_MAX_POINTS]
    )
    return [TrackPoint(float(lat), float(lon), recorded_at) for lat, lon, recorded_at in reversed(rows)]


def order_findings(*, order: Order, now: dt.datetime) -> list[Finding]:
    """Every alert condition of the order as it stands; kinds that cannot apply come back inactive."""
    thresholds = alert_thresholds()
    if order.status == OrderStatus.PAID:
        late = alerts.late_check(now=now, promised_at=order.promised_at, eta=order.eta, thresholds=thresholds)
        return [late, *(Finding(kind, False) for kind in (alerts.STALL, alerts.DEVIATION, alerts.OFFLINE))]
    if order.status != OrderStatus.DELIVERING:
        return [Finding(kind, False) for kind in AlertKind.values]
    destination = (float(order.delivery_lat), float(order.delivery_lon))
    warehouse = (float(order.warehouse.latitude), float(order.warehouse.longitude))
    track = order_track_recent(order=order, window_seconds=thresholds.stall_seconds + TRACK_WINDOW_MARGIN_SECONDS)
    rider = Rider.objects.filter(user_id=order.rider_id).first()
    # Silence counts from dispatch: a rider last heard before the order existed is not offline yet.
    last_heard_at = max(filter(None, [rider and rider.last_seen_at, order.dispatched_at]), default=None)
    offline = alerts.offline_check(now=now, last_heard_at=last_heard_at, thresholds=thresholds)
    device = rider.device_state() if rider else None
    if offline.active and device and device["reason"]:
        # The app's own report says why it went dark (permission, no fix, battery).
        offline = replace(
            offline, message=f"{offline.message}（设备：{device['reason']}）", data={**offline.data, "device": device}
        )
    return [
        alerts.stall_check(track, destination=destination, thresholds=thresholds),
        alerts.deviation_check(track, warehouse=warehouse, destination=destination, thresholds=thresholds),
        alerts.late_check(now=now, promised_at=order.promised_at, eta=order.eta, thresholds=thresholds),
        offline,
    ]


def order_alerts_evaluate(*, order_id: str, now: dt.datetime | None = None) -> dict[str, str]:
    """Open or resolve the order's alerts to match its conditions. Safe to run twice.

    Returns what changed, e.g. {"stall": "opened", "offline": "resolved"}.
    """
    now = now or timezone.now()
    order = Order.objects.select_related("warehouse").filter(pk=order_id).first()
    if order is None:
        return {}
    open_kinds = set(Alert.objects.filter(order=order, resolved_at__isnull=True).values_list("kind", flat=True))
    changed: dict[str, str] = {}
    for finding in order_findings(order=order, now=now):
        # The set above only saves work; the claim itself is the insert below.
        if finding.active and finding.kind not in open_kinds:
            if alert_open(order_id=order.pk, finding=finding) is not None:
                changed[finding.kind] = "opened"
        elif (
            not finding.active
            and finding.kind in open_kinds
            and alert_resolve(order_id=order.pk, kind=finding.kind) is not None
        ):
            changed[finding.kind] = "resolved"
    return changed


def _alert_event_data(alert: Alert, state: str) -> dict:
    return {"alert": {**alert_payload(alert), "state": state}}


@transaction.atomic
def alert_open(*, order_id: str, finding: Finding) -> Alert | None:
    """Open the alert of `finding.kind` unless one is open already; None when someone else holds it."""
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        return None
    try:
        # The partial unique index "one open alert per order and kind" is the
        # claim: of two workers inserting at once, exactly one succeeds.
        with transaction.atomic():
            alert = Alert.objects.create(
                order=order, rider_id=order.rider_id, kind=finding.kind, message=finding.message, data=finding.data
            )
    except IntegrityError:
        return None
    tracking_event_record(
        order=order, kind=EventKind.ALERT, operator_type=OperatorType.SYSTEM, data=_alert_event_data(alert, "open")
    )
    alert_publish(ops_alert_payload(alert))
    # Told once per order: a late alert that resolves and opens again (an ETA
    # hovering around the promise) must not ring the customer each time. The
    # order row is locked, so two workers cannot both see "not told yet".
    told = Notification.objects.filter(order=order, kind="order.late").exists()
    if finding.kind == AlertKind.LATE and not told:
        notification_send(
            user=order.user,
            kind="order.late",
            title="订单可能晚于承诺时间送达",
            body=f"很抱歉，订单 {order.pk}{finding.message}，我们正在催促配送。",
            order=order,
            email=True,
        )
    logger.info("alert opened: %s %s", finding.kind, order.pk)
    return alert


@transaction.atomic
def alert_resolve(*, order_id: str, kind: str) -> Alert | None:
    """Resolve the open alert of this kind; None when there is none (already resolved)."""
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        return None
    alert = Alert.objects.filter(order=order, kind=kind, resolved_at__isnull=True).first()
    if alert is None:
        return None
    now = timezone.now()
    # Conditional update: exactly one row changed, so this run owns the resolution.
    if Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=now) != 1:
        return None
    alert.resolved_at = now
    tracking_event_record(
        order=order, kind=EventKind.ALERT, operator_type=OperatorType.SYSTEM, data=_alert_event_data(alert, "resolved")
    )
    alert_publish(ops_alert_payload(alert))
    logger.info("alert resolved: %s %s", kind, order.pk)
    return alert


def orders_needing_watch() -> list[str]:
    """Ids of orders the periodic jobs look at: paid or delivering, or holding an open alert."""
    active = Order.objects.filter(status__in=[OrderStatus.PAID, OrderStatus.DELIVERING]).values_list("pk", flat=True)
    with_alerts = Alert.objects.filter(resolved_at__isnull=True).values_list("order_id", flat=True)
    return sorted(set(active) | set(with_alerts))
