"""The event recorder: every change of an order becomes one versioned tracking event.

It only records. What follows a change (notifications, ETA and alert jobs)
is said by the service that made it; the publish follows from the commit
(tracking.signals).
"""

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from orders.models import Order
from tracking.models import TrackingEvent
from xiaoxiang.geo import geohash_encode


def decimal6(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(f"{value:.6f}")


def tracking_event_record(
    *,
    order: Order,
    kind: str,
    changed_fields: Iterable[str] = (),
    operator: AbstractBaseUser | None = None,
    operator_type: int | None = None,
    stage: str = "",
    latitude: float | None = None,
    longitude: float | None = None,
    address: str = "",
    recorded_at: dt.datetime | None = None,
    data: dict[str, Any] | None = None,
) -> TrackingEvent:
    """Bump the order's version by one and record the event that produced it.

    The caller holds the order row locked (select_for_update) inside a
    transaction and has already applied its own field changes to `order`,
    naming them in `changed_fields` (only those, the version and update_time
    are written: the encrypted columns are not re-encrypted on every event).
    """
    now = timezone.now()
    order.version += 1
    order.update_time = now
    order.save(update_fields=["version", "update_time", *changed_fields])
    return TrackingEvent.objects.create(
        order=order,
        status=order.status,
        kind=kind,
        stage=stage,
        operator_id=str(operator.pk) if operator is not None else "",
        operator_type=operator_type,
        latitude=decimal6(latitude),
        longitude=decimal6(longitude),
        geohash=geohash_encode(latitude, longitude) if latitude is not None and longitude is not None else "",
        address=address,
        recorded_at=recorded_at or now,
        version=order.version,
        data=data or {},
    )
