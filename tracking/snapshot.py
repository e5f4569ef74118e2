"""The order snapshot (REST detail, WebSocket snapshot, cache) and how it changes.

Built once at staff level; tracking.role_views filters it per viewer. The
publish path keeps the cached copy current, so readers rarely rebuild it.
"""

import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from orders.models import STATUS_NAMES, Order, OrderStatus, Stage
from tracking.models import Alert, EventKind
from tracking.role_views import VIEWS, order_for_role, view_role
from tracking.selectors import order_rider_position, order_timeline
from tracking.wire import alert_payload, iso
from xiaoxiang.cache import redis_failed_within, shared_cache
from xiaoxiang.crypto import decrypt_text, encrypt_text

# Snapshot fields fixed when the order is created: never part of `changes`.
STATIC_FIELDS = frozenset({"id", "items", "total_amount", "create_time", "warehouse", "delivery"})


def _rider_name(order: Order) -> str | None:
    if order.rider is None:
        return None
    profile = getattr(order.rider, "rider_profile", None)
    return profile.display_name if profile else order.rider.get_username()


def timeline_entry(*, kind: str, status: int, stage: str | None, time) -> dict[str, Any]:
    label = Stage(stage).label if stage else OrderStatus(status).label
    return {"kind": kind, "status": status, "stage": stage or None, "time": iso(time), "label": label}


def order_snapshot_build(*, order: Order) -> dict[str, Any]:
    """The full (staff-level) snapshot of an order, JSON-ready."""
    rider_profile = getattr(order.rider, "rider_profile", None) if order.rider else None
    position = order_rider_position(order=order)
    return {
        "id": order.id,
        "status": order.status,
        "status_name": STATUS_NAMES[OrderStatus(order.status)],
        "status_display": OrderStatus(order.status).label,
        "stage": order.stage or None,
        "version": order.version,
        "total_amount": str(order.total_amount),
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": str(item.unit_price),
                "line_total": str(item.line_total),
            }
            for item in order.items.all()
        ],
        "create_time": iso(order.create_time),
        "update_time": iso(order.update_time),
        "promised_at": iso(order.promised_at),
        "eta": iso(order.eta),
        "warehouse": {
            "name": order.warehouse.name,
            "lat": float(order.warehouse.latitude),
            "lon": float(order.warehouse.longitude),
        },
        "delivery": {"address": order.delivery_address, "lat": order.delivery_lat, "lon": order.delivery_lon},
        "rider": None
        if order.rider is None
        else {
            "username": order.rider.get_username(),
            "name": _rider_name(order),
            "phone": rider_profile.phone if rider_profile else "",
        },
        "rider_position": None
        if position is None
        else {"lat": position["lat"], "lon": position["lon"], "recorded_at": iso(position["recorded_at"])},
        "timeline": [
            timeline_entry(kind=event.kind, status=event.status, stage=event.stage, time=event.recorded_at)
            for event in order_timeline(order=order)
        ],
        "alerts": [alert_payload(alert) for alert in Alert.objects.filter(order=order).order_by("opened_at", "id")],
    }


def snapshot_cache_key(order_id: str) -> str:
    return f"order-snapshot:{order_id}"


# The delivery address and point are personal data: PostgreSQL keeps them in
# encrypted columns, and the cache holds them sealed with the same keys.
def _sealed(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {**snapshot, "delivery": encrypt_text(json.dumps(snapshot["delivery"]))}


def _opened(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    try:
        return {**entry, "delivery": json.loads(decrypt_text(entry["delivery"]))}
    except (TypeError, ValueError):
        return None  # written before sealing, or under keys since retired: rebuild it


def snapshots_cached(order_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The cached snapshots of these orders (one round trip), by order id; missing ones left out."""
    keys = {snapshot_cache_key(order_id): order_id for order_id in order_ids}
    found = {keys[key]: _opened(entry) for key, entry in shared_cache().get_many(list(keys)).items()} if keys else {}
    return {order_id: snapshot for order_id, snapshot in found.items() if snapshot is not None}


def snapshot_cached(order_id: str) -> dict[str, Any] | None:
    return _opened(shared_cache().get(snapshot_cache_key(order_id)))


def order_snapshot(*, order: Order) -> dict[str, Any]:
    """The full snapshot, from the cache when it is at the order's current version."""
    cached = snapshot_cached(order.id)
    if cached is not None and cached["version"] == order.version:
        return cached
    if order.get_deferred_fields():
        # Read for its access rule only (order_access_for_user): fetch it whole, once.
        order = Order.objects.select_related("warehouse", "rider", "rider__rider_profile").get(pk=order.pk)
    snapshot = order_snapshot_build(order=order)
    shared_cache().set(snapshot_cache_key(order.id), _sealed(snapshot), settings.SNAPSHOT_CACHE_SECONDS)
    return snapshot


def order_snapshot_for_role(*, order: Order, role: str) -> dict[str, Any]:
    snapshot = order_snapshot(order=order)
    return order_for_role(snapshot, role, status=snapshot["status"])


def snapshot_cache_refresh(snapshot: dict[str, Any]) -> None:
    """Cache a freshly built snapshot unless a newer one is already cached."""
    snapshots_cache_store([snapshot], cached={snapshot["id"]: snapshot_cached(snapshot["id"])})


def snapshots_cache_store(snapshots: list[dict[str, Any]], *, cached: dict[str, Any]) -> None:
    """Cache fresh snapshots (one round trip) unless what was `cached` (by order id) is newer."""
    # Publishes of one order can finish out of order across processes; a
    # stale write here is harmless anyway (order_snapshot checks the version).
    fresh = {}
    for snapshot in snapshots:
        previous = cached.get(snapshot["id"])
        if previous is None or previous["version"] <= snapshot["version"]:
            fresh[snapshot_cache_key(snapshot["id"])] = _sealed(snapshot)
    if fresh:
        shared_cache().set_many(fresh, settings.SNAPSHOT_CACHE_SECONDS)


def mutable_fields(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in snapshot.items() if key not in STATIC_FIELDS}


def snapshot_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """The fields of `after` that differ from `before`; without `before`, every field that can change."""
    if before is None:
        return mutable_fields(after)
    # `is` first: consecutive snapshots of a batch share their unchanged values (timeline, items, ...).
    return {
        key: value
        for key, value in after.items()
        if key not in before or (before[key] is not value and before[key] != value)
    }


def changes_by_view(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`snapshot_changes` as each view sees it."""
    if before is None:
        return {view: mutable_fields(order_for_role(after, view_role(view), status=after["status"])) for view in VIEWS}
    # A view can only differ where the full snapshot differs, plus the live
    # position when the status (which decides who sees it) changed, so only
    # those fields are filtered per view: a batch of points diffs two fields, not twenty.
    changed = set(snapshot_changes(before, after))
    if before["status"] != after["status"]:
        changed.add("rider_position")
    before_part = {key: before[key] for key in changed if key in before}
    after_part = {key: after[key] for key in changed if key in after}
    views = {}
    for view in VIEWS:
        role = view_role(view)
        seen_before = order_for_role(before_part, role, status=before["status"])
        seen_after = order_for_role(after_part, role, status=after["status"])
        views[view] = {
            key: value for key, value in seen_after.items() if key not in seen_before or seen_before[key] != value
        }
    return views


def snapshot_advance(snapshot: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The snapshot after one event of a batch (only what the event itself tells)."""
    following = {**snapshot, "version": payload["version"]}
    # A point the quality rule flagged is history only: it never becomes the live position.
    if payload["kind"] == EventKind.LOCATION and payload["lat"] is not None and not payload["quality_flags"]:
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


def snapshot_after_points(
    order_id: str, previous: dict[str, Any] | None, payloads: list[dict[str, Any]], *, update_time: Any = None
) -> dict[str, Any] | None:
    """The snapshot after a batch of GPS points, advanced from the cached one; None when it must be rebuilt.

    The GPS ingest hot path: points change only rider_position, version and
    update_time, and every other change of an order bumps its version with an
    event of its own. So the cached snapshot one version before the batch, plus
    the batch, is the order as the batch left it. The ingest knows the
    `update_time` it wrote; without it, it is read from the row (one query
    instead of a rebuild's six), which must still be at the batch's version.
    """
    if previous is None or previous["version"] != payloads[0]["version"] - 1:
        return None
    if any(payload["kind"] != EventKind.LOCATION for payload in payloads):
        return None
    if update_time is None:
        row = Order.objects.filter(pk=order_id).values_list("version", "update_time").first()
        if row is None or row[0] != payloads[-1]["version"]:
            return None
        update_time = row[1]
    current = previous
    for payload in payloads:
        current = snapshot_advance(current, payload)
    return {**current, "update_time": update_time.isoformat()}


def order_version_key(order_id: str) -> str:
    return f"order-version:{order_id}"


ORDER_VERSION_SECONDS = 60  # short-lived: a publish that failed before refreshing it is found within a minute


def order_version_remember(order_id: str, version: int) -> None:
    order_versions_remember({order_id: version})


def order_versions_remember(versions: dict[str, int]) -> None:
    keys = {order_version_key(order_id): version for order_id, version in versions.items()}
    shared_cache().set_many(keys, ORDER_VERSION_SECONDS)


def order_versions_hint(*, order_ids: Iterable[str]) -> dict[str, int]:
    """Each order's newest published version, from the cache (one read for all), else the database.

    Orders that do not exist are left out.
    """
    order_ids = set(order_ids)
    if not order_ids:
        return {}
    keys = {order_version_key(order_id): order_id for order_id in order_ids}
    # Publishes made while Redis was away could not record their versions, so
    # for a hint's lifetime after this process last found Redis unreachable
    # the cached hints may be behind: ask the database.
    cached = {} if redis_failed_within(ORDER_VERSION_SECONDS) else shared_cache().get_many(list(keys))
    versions = {keys[key]: version for key, version in cached.items()}
    missing = order_ids - versions.keys()
    if missing:
        found = dict(Order.objects.filter(pk__in=missing).values_list("pk", "version"))
        shared_cache().set_many(
            {order_version_key(order_id): version for order_id, version in found.items()}, ORDER_VERSION_SECONDS
        )
        versions.update(found)
    return versions


def order_version_hint(*, order_id: str) -> int | None:
    """One order's newest published version (see order_versions_hint)."""
    return order_versions_hint(order_ids=[order_id]).get(order_id)
