"""Stream reads: what a client behind the live stream is sent (socket resync, /events/, /poll/).

Frames and pages are built from the same wire shapes and role views as the
publish path, so every transport shapes events identically.
"""

from typing import Any

from orders.models import Order
from tracking.models import TrackingEvent
from tracking.role_views import event_for_role, order_for_role
from tracking.snapshot import mutable_fields, order_snapshot
from tracking.wire import event_payload


def order_events_since(*, order: Order, since_version: int, limit: int, until_version: int | None = None):
    """Events with version > since_version (and <= until_version), ascending; at most `limit`, plus has_more."""
    events = TrackingEvent.objects.filter(order=order, version__gt=since_version).order_by("version")
    if until_version is not None:
        events = events.filter(version__lte=until_version)
    page = list(events[: limit + 1])
    return page[:limit], len(page) > limit


def _with_changes(events: list[dict[str, Any]], visible: dict[str, Any]) -> list[dict[str, Any]]:
    """Attach each event's `changes`: its version, and on the last (at the snapshot's version) every field.

    Applying them lands exactly on the REST detail.
    """
    for event in events:
        event["changes"] = {"version": event["version"]}
    if events and events[-1]["version"] == visible["version"]:
        events[-1]["changes"] = mutable_fields(visible)
    return events


def order_resync_frames(*, order: Order, role: str, since_version: int, max_events: int) -> list[dict[str, Any]]:
    """What a client at `since_version` needs: the missed events in order, or one snapshot when too many."""
    snapshot = order_snapshot(order=order)
    version = snapshot["version"]
    visible = order_for_role(snapshot, role, status=snapshot["status"])
    if version - since_version > max_events or since_version < 0:
        return [{"type": "snapshot", "version": version, "order": visible}]
    if since_version >= version:
        return []
    # The snapshot is at `version`, and events commit with their version
    # bump, so every event up to it is already readable.
    events, _ = order_events_since(order=order, since_version=since_version, until_version=version, limit=max_events)
    payloads = _with_changes([event_for_role(event_payload(event), role) for event in events], visible)
    return [
        {"type": "event", "version": payload["version"], "event": payload, "changes": payload.pop("changes")}
        for payload in payloads
    ]


def order_events_page(
    *, order: Order, role: str, since_version: int, limit: int, with_changes: bool = False
) -> dict[str, Any]:
    """A bounded page of events after `since_version` (/events/; /poll/ asks `with_changes`)."""
    # Up to the version read with the order: the page's version then covers
    # every event in it, and an event committed meanwhile waits for the next page.
    events, has_more = order_events_since(
        order=order, since_version=since_version, until_version=order.version, limit=limit
    )
    payloads = [event_for_role(event_payload(event), role) for event in events]
    if with_changes and payloads:
        snapshot = order_snapshot(order=order)
        _with_changes(payloads, order_for_role(snapshot, role, status=snapshot["status"]))
    return {"version": order.version, "events": payloads, "has_more": has_more}
