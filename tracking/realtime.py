"""Publishing committed changes to the Channels layer (best effort; the database is the truth).

The publish path (events_publish, run after commit) rebuilds the order's
snapshot once, diffs it against the cached previous snapshot per viewer role
and refreshes the cache, so every consumer and poll only forwards what it
receives. The stream reads used by resync, /events/ and /poll/ live here too,
so the WebSocket and HTTP paths shape events identically.
"""

import datetime as dt
import logging
import re
import threading
import time
from collections import defaultdict
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from orders.models import Order, OrderStatus
from orders.selectors import (
    ROLE_CUSTOMER,
    ROLE_STAFF,
    order_snapshot,
    order_snapshot_build,
    snapshot_cache_key,
    snapshot_for_role,
)
from tracking.models import Alert, EventKind, Rider, TrackingEvent

logger = logging.getLogger(__name__)

OPS_GROUP = "ops"
ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Snapshot fields fixed when the order is created: never part of `changes`.
STATIC_FIELDS = frozenset({"id", "items", "total_amount", "create_time", "warehouse", "delivery"})

# Rider and warehouse viewers see the same thing (everything but alerts), so
# the publish path computes three views, not four.
VIEW_STAFF, VIEW_CUSTOMER, VIEW_MEMBER = "staff", "customer", "member"


def order_group(order_id: str) -> str:
    """The one place that names an order's channel-layer group."""
    return f"order.{order_id}"


def notifications_group(user_id: int) -> str:
    return f"notifications.{user_id}"


def role_view(role: str) -> str:
    if role == ROLE_STAFF:
        return VIEW_STAFF
    if role == ROLE_CUSTOMER:
        return VIEW_CUSTOMER
    return VIEW_MEMBER


_VIEW_ROLE = {VIEW_STAFF: ROLE_STAFF, VIEW_CUSTOMER: ROLE_CUSTOMER, VIEW_MEMBER: "rider"}


def _utc_iso(value: dt.datetime) -> str:
    # Device times arrive with their own offset; the snapshot (read back from
    # the database) is in UTC, so events use UTC too and compare as strings.
    return value.astimezone(dt.UTC).isoformat()


def event_payload(event: TrackingEvent) -> dict[str, Any]:
    """The wire form of one tracking event (full precision; event_for_role filters it)."""
    return {
        "id": event.id,
        "kind": event.kind,
        "status": event.status,
        "stage": event.stage or None,
        "lat": float(event.latitude) if event.latitude is not None else None,
        "lon": float(event.longitude) if event.longitude is not None else None,
        "recorded_at": _utc_iso(event.recorded_at),
        "version": event.version,
        "operator_type": event.operator_type,
        "data": event.data or {},
    }


def event_for_role(payload: dict[str, Any], role: str) -> dict[str, Any]:
    """Filter one event like the REST detail filters the snapshot.

    Only staff see alert details. Customers see a position only while the
    order is delivering, coarsened to 4 decimals, and no operator data (the
    dispatch event names the rider's username; customers get the display name
    through `changes.rider`), except an ETA event's data.
    """
    if role == ROLE_STAFF:
        return payload
    filtered = dict(payload)
    if payload["kind"] == EventKind.ALERT:
        filtered["data"] = {}
    if role == ROLE_CUSTOMER:
        if payload["kind"] != EventKind.ETA:
            filtered["data"] = {}
        if payload["kind"] == EventKind.LOCATION and payload["status"] != OrderStatus.DELIVERING:
            filtered["lat"] = filtered["lon"] = None
        elif payload["lat"] is not None and payload["lon"] is not None:
            filtered["lat"], filtered["lon"] = round(payload["lat"], 4), round(payload["lon"], 4)
    return filtered


def _view(snapshot: dict[str, Any], view: str) -> dict[str, Any]:
    return snapshot_for_role(snapshot, _VIEW_ROLE[view], status=snapshot["status"])


def mutable_fields(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in snapshot.items() if key not in STATIC_FIELDS}


def snapshot_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """The fields of `after` that differ from `before`; without `before`, every field that can change."""
    if before is None:
        return mutable_fields(after)
    return {key: value for key, value in after.items() if key not in before or before[key] != value}


def _changes_by_view(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        view: snapshot_changes(None if before is None else _view(before, view), _view(after, view))
        for view in (VIEW_STAFF, VIEW_CUSTOMER, VIEW_MEMBER)
    }


def _advance(snapshot: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The snapshot after one event of a batch (only what the event itself tells)."""
    following = {**snapshot, "version": payload["version"]}
    if payload["kind"] == EventKind.LOCATION and payload["lat"] is not None:
        position = snapshot.get("rider_position")
        # A late (offline) point fills history but never moves the live position back.
        # Ties go to the later version, as in order_rider_position.
        if position is None or position["recorded_at"] <= payload["recorded_at"]:
            following["rider_position"] = {
                "lat": payload["lat"],
                "lon": payload["lon"],
                "recorded_at": payload["recorded_at"],
            }
    return following


def _snapshot_after_points(
    order_id: str, previous: dict[str, Any] | None, payloads: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The snapshot after a batch of GPS points, advanced from the cached one; None when it must be rebuilt.

    The GPS ingest hot path: points change only rider_position, version and
    update_time, and every other change of an order bumps its version with an
    event of its own. So the cached snapshot one version before the batch, plus
    the batch, is the current state, provided nothing committed after the
    batch (checked on the row, one query instead of a rebuild's six).
    """
    if previous is None or previous["version"] != payloads[0]["version"] - 1:
        return None
    if any(payload["kind"] != EventKind.LOCATION for payload in payloads):
        return None
    row = Order.objects.filter(pk=order_id).values_list("version", "update_time").first()
    if row is None or row[0] != payloads[-1]["version"]:
        return None
    current = previous
    for payload in payloads:
        current = _advance(current, payload)
    return {**current, "update_time": row[1].isoformat()}


def snapshot_cache_refresh(snapshot: dict[str, Any]) -> None:
    """Cache a freshly built snapshot unless a newer one is already cached."""
    key = snapshot_cache_key(snapshot["id"])
    cached = cache.get(key)
    # Publishes of one order can finish out of order across processes; a
    # stale write here is harmless anyway (order_snapshot checks the version).
    if cached is None or cached["version"] <= snapshot["version"]:
        cache.set(key, snapshot, settings.SNAPSHOT_CACHE_SECONDS)


def order_events_message(order_id: str, events: list[TrackingEvent]) -> dict[str, Any] | None:
    """The channel-layer message for a batch of one order's committed events, with per-view changes."""
    payloads = [event_payload(event) for event in sorted(events, key=lambda event: event.version)]
    previous = cache.get(snapshot_cache_key(order_id))
    current = _snapshot_after_points(order_id, previous, payloads)
    if current is None:
        order = Order.objects.select_related("warehouse", "rider", "rider__rider_profile").filter(pk=order_id).first()
        if order is None:
            return None
        current = order_snapshot_build(order=order)
    snapshot_cache_refresh(current)
    cache.set(order_version_key(order_id), current["version"], 60)
    # A previous snapshot at or past this batch (cached by a reader after our
    # commit) cannot say what changed: send every changeable field instead.
    if previous is not None and previous["version"] >= payloads[0]["version"]:
        previous = None
    changes = []
    running = previous
    for index, payload in enumerate(payloads):
        if index == len(payloads) - 1:
            following = current
        elif running is None:
            following = None
        else:
            following = _advance(running, payload)
        if following is None:
            step = {view: {"version": payload["version"]} for view in (VIEW_STAFF, VIEW_CUSTOMER, VIEW_MEMBER)}
        else:
            step = _changes_by_view(running, following)
            for view_changes in step.values():
                view_changes["version"] = payload["version"]
        changes.append(step)
        running = following
    return {
        "type": "order.events",
        "order_id": order_id,
        "version": payloads[-1]["version"],
        "events": payloads,
        "changes": changes,
    }


def group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # Push is best effort: heartbeats and resync bring clients back to
        # the database state, so a broken layer must not fail the write.
        logger.exception("channel-layer publish to %s failed", group)


def events_publish(events: list[TrackingEvent]) -> None:
    """Send committed events to their orders' groups, one message per order, in version order."""
    by_order: dict[str, list[TrackingEvent]] = defaultdict(list)
    for event in events:
        by_order[event.order_id].append(event)
    for order_id, order_events in by_order.items():
        try:
            message = order_events_message(order_id, order_events)
        except Exception:
            # Same rule as group_send: never fail the (already committed) write.
            logger.exception("building the publish of order %s failed", order_id)
            continue
        if message is not None:
            group_send(order_group(order_id), message)


def rider_payload(rider: Rider) -> dict[str, Any]:
    return {
        "id": rider.user_id,
        "name": rider.display_name,
        "lat": rider.last_lat,
        "lon": rider.last_lon,
        "recorded_at": rider.last_recorded_at.isoformat() if rider.last_recorded_at else None,
        "online": rider.online,
        "device": rider.device_state(),
    }


def rider_position_publish(rider: Rider) -> None:
    """Tell the ops map a rider moved (same shape as the ops snapshot's riders)."""
    group_send(OPS_GROUP, {"type": "ops.rider", "rider": rider_payload(rider)})


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "order": alert.order_id,
        "rider": alert.rider_id,
        "kind": alert.kind,
        "kind_display": alert.get_kind_display(),
        "message": alert.message,
        "data": alert.data or {},
        "opened_at": alert.opened_at.isoformat() if alert.opened_at else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def alert_publish(alert: Alert) -> None:
    """Push an opened or resolved alert to /ws/ops/ after commit (at once outside a transaction)."""
    message = {"type": "ops.alert", "alert": alert_payload(alert)}
    transaction.on_commit(lambda: group_send(OPS_GROUP, message))


# --- Stream reads (resync, /events/, /poll/) ---------------------------------


def order_version(*, order_id: str) -> int | None:
    return Order.objects.filter(pk=order_id).values_list("version", flat=True).first()


def order_version_key(order_id: str) -> str:
    return f"order-version:{order_id}"


def order_version_hint(*, order_id: str) -> int | None:
    """The order's newest published version, from the cache (the publish path keeps it), else the database."""
    version = cache.get(order_version_key(order_id))
    if version is None:
        version = order_version(order_id=order_id)
        if version is not None:
            # Short-lived: a publish that failed before refreshing it is found within a minute.
            cache.set(order_version_key(order_id), version, 60)
    return version


def order_events_since(*, order: Order, since_version: int, limit: int, until_version: int | None = None):
    """Events with version > since_version (and <= until_version), ascending; at most `limit`, plus has_more."""
    events = TrackingEvent.objects.filter(order=order, version__gt=since_version).order_by("version")
    if until_version is not None:
        events = events.filter(version__lte=until_version)
    page = list(events[: limit + 1])
    return page[:limit], len(page) > limit


def order_resync_frames(*, order: Order, role: str, since_version: int, max_events: int) -> list[dict[str, Any]]:
    """What a client at `since_version` needs: the missed events in order, or one snapshot when too many.

    The last replayed event carries every changeable field at its current
    value, so applying the frames lands exactly on the REST detail.
    """
    snapshot = order_snapshot(order=order)
    version = snapshot["version"]
    visible = snapshot_for_role(snapshot, role, status=snapshot["status"])
    if version - since_version > max_events or since_version < 0:
        return [{"type": "snapshot", "version": version, "order": visible}]
    if since_version >= version:
        return []
    # The snapshot is at `version`, and events commit with their version
    # bump, so every event up to it is already readable.
    events, _ = order_events_since(order=order, since_version=since_version, until_version=version, limit=max_events)
    frames = [
        {
            "type": "event",
            "version": event.version,
            "event": event_for_role(event_payload(event), role),
            "changes": {"version": event.version},
        }
        for event in events
    ]
    frames[-1]["changes"] = mutable_fields(visible)
    return frames


def ops_state() -> dict[str, Any]:
    """Every active rider's last position and every open alert, for a new /ws/ops/ socket."""
    riders = Rider.objects.filter(online=True, user__is_active=True, last_lat__isnull=False).order_by("user_id")
    alerts = Alert.objects.filter(resolved_at__isnull=True).order_by("opened_at", "id")
    return {
        "type": "ops.snapshot",
        "riders": [rider_payload(rider) for rider in riders],
        "alerts": [alert_payload(alert) for alert in alerts],
    }


# --- Connection limits, shared by all daphne processes -----------------------


class ConnectionSlots:
    """Counts open sockets per user and per IP: a Redis sorted set per key (member: socket, score: lease end).

    Leases expire unless the socket's heartbeat renews them, so a daphne
    process that dies without running disconnect frees its slots by itself.
    Without REDIS_URL there is one process, and a dict does the same job.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local: dict[str, dict[str, float]] = defaultdict(dict)
        self._redis = None

    def _client(self):
        if not settings.REDIS_URL:
            return None
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(settings.REDIS_URL)
        return self._redis

    @staticmethod
    def _key(scope: str) -> str:
        return f"xiaoxiang:ws-slots:{scope}"

    def acquire(self, *, scope: str, member: str, limit: int, ttl: float) -> bool:
        """Take a slot; False when `limit` sockets already hold one."""
        now = time.time()
        client = self._client()
        if client is None:
            with self._lock:
                leases = self._local[scope]
                for expired in [name for name, until in leases.items() if until <= now]:
                    del leases[expired]
                if member not in leases and len(leases) >= limit:
                    return False
                leases[member] = now + ttl
                return True
        key = self._key(scope)
        # Add first, then count: two sockets racing for the last slot may both
        # be refused, never both admitted.
        pipe = client.pipeline()
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zadd(key, {member: now + ttl})
        pipe.zcard(key)
        pipe.expire(key, int(ttl) + 1)
        count = pipe.execute()[2]
        if count > limit:
            client.zrem(key, member)
            return False
        return True

    def renew(self, *, scope: str, member: str, ttl: float) -> None:
        client = self._client()
        if client is None:
            with self._lock:
                if member in self._local[scope]:
                    self._local[scope][member] = time.time() + ttl
            return
        key = self._key(scope)
        pipe = client.pipeline()
        pipe.zadd(key, {member: time.time() + ttl}, xx=True)
        pipe.expire(key, int(ttl) + 1)
        pipe.execute()

    def release(self, *, scope: str, member: str) -> None:
        client = self._client()
        if client is None:
            with self._lock:
                self._local[scope].pop(member, None)
            return
        client.zrem(self._key(scope), member)


connection_slots = ConnectionSlots()


def order_id_valid(order_id: str) -> bool:
    """Order ids are 32-char tokens; anything else cannot name an order (nor a channel-layer group)."""
    return bool(ORDER_ID_PATTERN.fullmatch(order_id))
