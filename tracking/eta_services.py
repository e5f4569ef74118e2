"""ETA writes: refit the model from history, recompute an order's ETA and record it as an event."""

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications.services import notification_send
from orders.models import Order, OrderStatus
from tracking.eta import (
    Delivery,
    EtaParams,
    TrackPoint,
    eta_fit,
    eta_predict_delivering,
    eta_predict_paid,
    track_arrived_at,
)
from tracking.events import tracking_event_record
from tracking.models import POSITION, EtaFit, EventKind, OperatorType, TrackingEvent

logger = logging.getLogger(__name__)

PARAMS_CACHE_KEY = "tracking.eta.params"
PARAMS_CACHE_SECONDS = 300
HISTORY_LIMIT = 1000
FITS_KEPT = 50
RECENT_POINTS = 40


def local_tz() -> dt.tzinfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def deliveries_history(*, limit: int = HISTORY_LIMIT) -> list[Delivery]:
    """The newest completed deliveries with their stage times and tracks (no flagged points), oldest first."""
    orders = list(
        Order.objects.filter(status=OrderStatus.COMPLETED, dispatched_at__isnull=False, delivered_at__isnull=False)
        .select_related("warehouse")
        .order_by("-delivered_at")[:limit]
    )
    if not orders:
        return []
    stage_times: dict[str, dict[str, dt.datetime]] = defaultdict(dict)
    points: dict[str, list[TrackPoint]] = defaultdict(list)
    rows = (
        TrackingEvent.objects.filter(order__in=[order.pk for order in orders])
        .filter(Q(kind=EventKind.STAGE) | POSITION)
        .order_by("order_id", "recorded_at", "version")
        .values_list("order_id", "kind", "stage", "latitude", "longitude", "recorded_at")
    )
    # Fetched at once, not streamed: on SQLite an open cursor would hold the
    # database's read lock, and the web process's writers, for the whole fit.
    for order_id, kind, stage, latitude, longitude, recorded_at in list(rows):
        if kind == EventKind.STAGE:
            stage_times[order_id][stage] = recorded_at
        elif latitude is not None and longitude is not None:
            points[order_id].append(TrackPoint(float(latitude), float(longitude), recorded_at))
    return [
        Delivery(
            warehouse=(float(order.warehouse.latitude), float(order.warehouse.longitude)),
            destination=(float(order.delivery_lat), float(order.delivery_lon)),
            paid_at=order.paid_at,
            dispatched_at=order.dispatched_at,
            delivered_at=order.delivered_at,
            stage_times=stage_times[order.pk],
            points=tuple(points[order.pk]),
        )
        for order in reversed(orders)
    ]


def eta_model_refit() -> EtaFit:
    """Fit the ETA model on the platform's completed deliveries and make it the current one."""
    # The fit takes a while and needs no lock: only the write is a transaction.
    params = eta_fit(deliveries_history(), tz=local_tz())
    return _eta_fit_store(params)


@transaction.atomic
def _eta_fit_store(params: EtaParams) -> EtaFit:
    fit = EtaFit.objects.create(
        fitted_at=timezone.now(), deliveries=params.deliveries, samples=params.samples, params=params.as_dict()
    )
    stale = EtaFit.objects.order_by("-fitted_at", "-id").values_list("pk", flat=True)[FITS_KEPT:]
    EtaFit.objects.filter(pk__in=list(stale)).delete()
    transaction.on_commit(lambda: cache.delete(PARAMS_CACHE_KEY))
    return fit


def eta_params_current() -> EtaParams:
    """The newest fit (cached), or the documented defaults before the first fit."""
    data = cache.get(PARAMS_CACHE_KEY)
    if data is None:
        fit = EtaFit.objects.order_by("-fitted_at", "-id").first()
        data = fit.params if fit is not None else {}
        cache.set(PARAMS_CACHE_KEY, data, PARAMS_CACHE_SECONDS)
    return EtaParams.from_dict(data)


def order_eta_predict(*, order: Order, now: dt.datetime | None = None) -> dt.datetime | None:
    """What the model says now for a paid or delivering order; None for any other status."""
    now = now or timezone.now()
    params = eta_params_current()
    destination = (float(order.delivery_lat), float(order.delivery_lon))
    warehouse = (float(order.warehouse.latitude), float(order.warehouse.longitude))
    if order.status == OrderStatus.DELIVERING:
        # The newest points: the position, and whether (since when) the rider waits at the door.
        recent = [
            TrackPoint(float(lat), float(lon), recorded_at)
            for lat, lon, recorded_at in TrackingEvent.objects.for_order(order)
            .positions()
            .order_by("-recorded_at", "-version")
            .values_list("latitude", "longitude", "recorded_at")[:RECENT_POINTS]
        ]
        return eta_predict_delivering(
            params,
            now=now,
            destination=destination,
            warehouse=warehouse,
            dispatched_at=order.dispatched_at,
            position=recent[0] if recent else None,
            tz=local_tz(),
            arrived_at=track_arrived_at(recent, destination),
        )
    if order.status == OrderStatus.PAID:
        phase_started_at = order.paid_at or now
        if order.stage:
            stage_event = (
                TrackingEvent.objects.for_order(order)
                .filter(kind=EventKind.STAGE, stage=order.stage)
                .order_by("-version")
                .values_list("recorded_at", flat=True)
                .first()
            )
            phase_started_at = stage_event or phase_started_at
        return eta_predict_paid(
            params,
            now=now,
            destination=destination,
            warehouse=warehouse,
            stage=order.stage,
            phase_started_at=phase_started_at,
            tz=local_tz(),
        )
    return None


def order_eta_refresh(*, order_id: str) -> bool:
    """Recompute an order's ETA; store it and record an `eta` event when it moved enough.

    Safe to run twice: the second run finds the same ETA stored and changes nothing.
    """
    order = Order.objects.select_related("warehouse").filter(pk=order_id).first()
    if order is None:
        return False
    eta = order_eta_predict(order=order)
    if eta is None:
        return False
    return _order_eta_store(order_id=order_id, eta=eta)


@transaction.atomic
def _order_eta_store(*, order_id: str, eta: dt.datetime) -> bool:
    # The prediction was made without the lock; the comparison happens under
    # it, so two workers racing on one order record the change at most once.
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None or order.status not in (OrderStatus.PAID, OrderStatus.DELIVERING):
        return False
    eta = eta.replace(microsecond=0)
    previous = order.eta
    change = (eta - previous).total_seconds() if previous is not None else None
    if change is not None and abs(change) < settings.ETA_MIN_CHANGE_SECONDS:
        return False
    # What the customer was last told: the first ETA (shown on the order page)
    # or the last one notified. Measuring from it, not from the previous
    # event, also catches a slow drift made of many small moves.
    told_eta = previous
    last_event_data = (
        TrackingEvent.objects.for_order(order)
        .filter(kind=EventKind.ETA)
        .order_by("-version")
        .values_list("data", flat=True)
        .first()
    )
    if last_event_data and last_event_data.get("told_eta"):
        told_eta = dt.datetime.fromisoformat(last_event_data["told_eta"])
    drift = (eta - told_eta).total_seconds() if told_eta is not None else 0.0
    notify = abs(drift) >= settings.ETA_NOTIFY_CHANGE_SECONDS
    order.eta = eta
    tracking_event_record(
        order=order,
        kind=EventKind.ETA,
        changed_fields=["eta"],
        operator_type=OperatorType.SYSTEM,
        data={
            "eta": eta.isoformat(),
            "previous_eta": previous.isoformat() if previous is not None else None,
            "change_seconds": int(change) if change is not None else None,
            "told_eta": (eta if notify or told_eta is None else told_eta).isoformat(),
        },
    )
    if notify:
        local_eta = timezone.localtime(eta)
        direction = "推迟" if drift > 0 else "提前"
        notification_send(
            user=order.user,
            kind="order.eta",
            title=f"预计送达时间{direction}至 {local_eta:%H:%M}",
            body=f"订单 {order.pk} 的预计送达时间{direction}了约 {round(abs(drift) / 60)} 分钟。",
            order=order,
        )
    return True
