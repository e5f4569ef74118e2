"""Publishing committed changes to the Channels layer (best effort; the database is the truth).

events_publish (run after commit by tracking.signals) and points_publish
(run after commit by the GPS ingest) build the order's snapshot once, diff it
against the cached previous snapshot per view, encode each view's socket
frames and refresh the cache, so every consumer and poll only forwards what
it receives.
"""

import logging
from collections import defaultdict
from typing import Any

import orjson
from django.db import transaction

from orders.models import Order
from tracking.models import Rider, TrackingEvent
from tracking.role_views import VIEWS, event_for_role, view_role
from tracking.snapshot import (
    changes_by_view,
    order_snapshot_build,
    order_version_remember,
    order_versions_remember,
    snapshot_advance,
    snapshot_after_points,
    snapshot_cached,
    snapshots_cache_store,
    snapshots_cached,
)
from tracking.wire import event_payload, rider_payload
from xiaoxiang import metrics
from xiaoxiang.push import group_send, group_send_many

logger = logging.getLogger(__name__)

OPS_GROUP = "ops"


def order_group(order_id: str) -> str:
    """The one place that names an order's channel-layer group."""
    return f"order.{order_id}"


def _frames(payloads: list[dict[str, Any]], changes: list[dict[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """Each view's socket frame per event, as text; a view that sees the same as another reuses its text."""
    frames: dict[str, list[str]] = {view: [] for view in VIEWS}
    for payload, step in zip(payloads, changes, strict=True):
        encoded: list[tuple[dict, dict, str]] = []
        for view in VIEWS:
            event, view_changes = event_for_role(payload, view_role(view)), step[view]
            text = next((text for seen, diff, text in encoded if seen == event and diff == view_changes), None)
            if text is None:
                frame = {"type": "event", "version": payload["version"], "event": event, "changes": view_changes}
                # orjson: a 500-point batch encodes ~1,000 frames, 6 µs each with json, 0.3 µs with orjson.
                text = orjson.dumps(frame).decode()
                encoded.append((event, view_changes, text))
            frames[view].append(text)
    return frames


def _order_message(
    order_id: str, payloads: list[dict[str, Any]], previous: dict[str, Any] | None, current: dict[str, Any]
) -> dict[str, Any]:
    """The channel-layer message for a batch of one order's committed events (in version order)."""
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
            following = snapshot_advance(running, payload)
        if following is None:
            step = {view: {"version": payload["version"]} for view in VIEWS}
        else:
            step = changes_by_view(running, following)
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
        # The socket frames, encoded here once per view, so a daphne process
        # forwards text instead of filtering and encoding once per socket.
        "frames": _frames(payloads, changes),
    }


def _current_snapshot(
    order_id: str, payloads: list[dict[str, Any]], previous: dict[str, Any] | None, update_time: Any = None
) -> dict[str, Any] | None:
    current = snapshot_after_points(order_id, previous, payloads, update_time=update_time)
    if current is None:
        order = Order.objects.select_related("warehouse", "rider", "rider__rider_profile").filter(pk=order_id).first()
        if order is None:
            return None
        current = order_snapshot_build(order=order)
    return current


def order_events_message(order_id: str, events: list[TrackingEvent]) -> dict[str, Any] | None:
    """The channel-layer message for a batch of one order's committed events, with per-view changes."""
    payloads = [event_payload(event) for event in sorted(events, key=lambda event: event.version)]
    previous = snapshot_cached(order_id)
    current = _current_snapshot(order_id, payloads, previous)
    if current is None:
        return None
    snapshots_cache_store([current], cached={order_id: previous})
    order_version_remember(order_id, current["version"])
    return _order_message(order_id, payloads, previous, current)


@metrics.PUBLISH_SECONDS.time()
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


@metrics.PUBLISH_SECONDS.time()
def points_publish(
    order_points: dict[str, list[dict[str, Any]]],
    *,
    update_time: Any,
    rider: dict[str, Any] | None,
    claims: list[tuple[str, int]],
) -> set[str]:
    """After a GPS ingest commits: every order's events message, the ops rider and the claims, in one send.

    `order_points` are each order's new location payloads in version order,
    `rider` the ops map's rider payload when the live position moved, `claims`
    the jobs' debounce keys (see xiaoxiang.push). Returns the claims won.
    Redis round trips: one read of the cached snapshots, one write of them
    and one of the versions, one for the sends and claims.
    """
    cached = snapshots_cached(order_points)
    sends, snapshots = [], []
    for order_id, payloads in order_points.items():
        previous = cached.get(order_id)
        try:
            current = _current_snapshot(order_id, payloads, previous, update_time)
            if current is None:
                continue
            sends.append((order_group(order_id), _order_message(order_id, payloads, previous, current)))
            snapshots.append(current)
        except Exception:
            # Same rule as group_send: never fail the (already committed) write.
            logger.exception("building the publish of order %s failed", order_id)
    if snapshots:
        snapshots_cache_store(snapshots, cached=cached)
        order_versions_remember({snapshot["id"]: snapshot["version"] for snapshot in snapshots})
    if rider is not None:
        sends.append((OPS_GROUP, {"type": "ops.rider", "rider": rider}))
    return group_send_many(sends, claims=claims)


def rider_position_publish(rider: Rider, *, username: str, delivering: int) -> None:
    """Tell the ops map a rider moved (the ops snapshot's rider shape)."""
    group_send(
        OPS_GROUP, {"type": "ops.rider", "rider": rider_payload(rider, username=username, delivering=delivering)}
    )


def alert_publish(payload: dict[str, Any]) -> None:
    """Push an opened or resolved alert (tracking.ops.ops_alert_payload) to /ws/ops/ after commit."""
    message = {"type": "ops.alert", "alert": payload}
    transaction.on_commit(lambda: group_send(OPS_GROUP, message))
