"""API test helpers: a DRF client per persona, GPS point factories and database counts."""

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from orders.models import Order, OrderItem
from tracking.models import Alert, Rider, TrackingEvent


def bearer(user: User) -> str:
    return f"Bearer {AccessToken.for_user(user)}"


@pytest.fixture
def api() -> Callable[[User | None], APIClient]:
    """api(user) is a client authenticated with a fresh access token; api() is anonymous."""

    def _client(user: User | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=bearer(user))
        return client

    return _client


def point(client_id: str, *, at: dt.datetime, lat: float = 31.19, lon: float = 121.44, **extra: Any) -> dict:
    return {"client_id": client_id, "lat": lat, "lon": lon, "recorded_at": at.isoformat(), **extra}


def track(count: int, *, start: dt.datetime | None = None, step_seconds: float = 0.5, prefix: str = "p") -> list[dict]:
    """`count` valid points moving north-east from the warehouse, `step_seconds` apart."""
    start = start or timezone.now()
    return [
        point(
            f"{prefix}-{index}",
            at=start + dt.timedelta(seconds=index * step_seconds),
            lat=31.188 + index * 0.00001,
            lon=121.437 + index * 0.00001,
        )
        for index in range(count)
    ]


def db_counts() -> dict[str, int]:
    """Row counts of everything an API write may touch, to assert a refused request stored nothing."""
    return {
        "orders": Order.objects.count(),
        "items": OrderItem.objects.count(),
        "events": TrackingEvent.objects.count(),
        "alerts": Alert.objects.count(),
        "users": User.objects.count(),
    }


def rider_state(user: User) -> tuple:
    rider = Rider.objects.get(user=user)
    return rider.last_lat, rider.last_lon, rider.last_recorded_at
