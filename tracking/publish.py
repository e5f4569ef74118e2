"""Publishing committed changes to the Channels layer (best effort; the database is the truth).

events_publish (run after commit by tracking.signals) builds the order's
snapshot once, diffs it against the cached previous snapshot per view,
encodes each view's socket frames and refreshes the cache, so every consumer
and poll only forwards what it receives.
"""

import json
import logging
from collections import defaultdict
from typing import Any

from django.db import transaction

from orders.models import Order
from tracking.models import Rider, TrackingEvent
from tracking.role_views import VIEWS, event_for_role, view_role
from tracking.snapshot import (
    changes_by_view,
    order_snapshot_build,
    order_version_remember,
    snapshot_advance,
    snapshot_after_points,
    snapshot_cache_key,
    snapshot_cache_refresh,
)
from tracking.wire import event_payload, rider_payload
from xiaoxiang import metrics
from xiaoxiang.caching import shared_cache
from xiaoxiang.push import group_send

logger = logging.getLogger(__name__)

OPS_GROUP = "ops"


def order_group(order_id: str) -> str:
    """The one place that names an order's channel-layer group."""
    return f"order.{order_id}"


def order_events_message(order_id: str, events: list[TrackingEvent]) -> dict[str, Any] | None:
    """The channel-layer message for a batch of one order's committed events, with per-view changes."""
    payloads = [event_payload(event) for event in sorted(events, key=lambda event: event.version)]
    previous = shared_cache().get(snapshot_cache_key(order_id))
    current = snapshot_after_points(order_id, previous, payloads)
    if current is None:
        order = Order.objects.select_related("warehouse", "rider", "rider__rider_profile").filter(pk=order_id).first()
        if order is None:
            return None
        current = order_snapshot_build(order=order)
    snapshot_cache_refresh(current)
    order_version_remember(order_id, current["version"])
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
        "frames": {
            view: [
                json.dumps(
                    {
                        "type": "event",
                        "version": payload["version"],
                        "event": event_for_role(payload, view_role(view)),
                        "changes": step[view],
                    }
                )
                for payload, step in zip(payloads, changes, strict=True)
            ]
            for view in VIEWS
        },
    }


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


def rider_position_publish(rider: Rider, *, username: str, delivering: int) -> None:
    """Tell the ops map a rider moved (the ops snapshot's rider shape)."""
    group_send(
        OPS_GROUP, {"type": "ops.rider", "rider": rider_payload(rider, username=username, delivering=delivering)}
    )


def alert_publish(payload: dict[str, Any]) -> None:
    """Push an opened or resolved alert (tracking.ops.ops_alert_payload) to /ws/ops/ after commit."""
    message = {"type": "ops.alert", "alert": payload}
    transaction.on_commit(lambda: group_send(OPS_GROUP, message))
