import datetime as dt
import uuid

import pytest
from django.utils import timezone

from orders.models import Order
from tests.conftest import HOME_LAT, HOME_LON, WAREHOUSE_LAT, WAREHOUSE_LON
from tracking.management.simulation import from_local, to_local
from tracking.services import LocationPoint, location_points_ingest

HOME = (HOME_LAT, HOME_LON)
WAREHOUSE = (WAREHOUSE_LAT, WAREHOUSE_LON)


@pytest.fixture
def jobs_on(settings):
    settings.TRACKING_JOBS_ENABLED = True


def toward_home(fraction: float) -> tuple[float, float]:
    """The point `fraction` of the way from the test warehouse to the test home, in a straight line."""
    x, y = to_local(WAREHOUSE, HOME)
    return from_local(WAREHOUSE, (x * fraction, y * fraction))


def backdate(order: Order, *, minutes: float) -> Order:
    """Move the order's creation and dispatch into the past, so older points are accepted."""
    now = timezone.now()
    Order.objects.filter(pk=order.pk).update(
        create_time=now - dt.timedelta(minutes=minutes + 10), dispatched_at=now - dt.timedelta(minutes=minutes)
    )
    order.refresh_from_db()
    return order


def ingest(rider, points: list[tuple[tuple[float, float], dt.datetime]]):
    """Points through the real ingest service, as the API would pass them."""
    return location_points_ingest(
        rider_user=rider,
        points=[
            (index, LocationPoint(uuid.uuid4().hex, position[0], position[1], recorded_at))
            for index, (position, recorded_at) in enumerate(points)
        ],
    )
