"""What each role sees of an order: its snapshot, its events and its trajectory.

The one place for these rules. Staff see everything. Customers see the
rider's display name only, the live rider position only while the order is
delivering, the path only once it is dispatched, every coordinate coarsened
to 4 decimals, and no operator data (the dispatch event names the rider's
username) except an ETA event's. Only staff see alerts, and the points the
GPS quality rule flagged (tracking/quality.py): everyone else gets such an
event without a position, and no flags. Riders and warehouse
operators see the same thing (everything but alerts), so the publish path
computes three views, not four.
"""

from typing import Any

from orders.models import OrderStatus
from tracking.models import EventKind
from xiaoxiang.roles import ROLE_CUSTOMER, ROLE_RIDER, ROLE_STAFF

CUSTOMER_DIGITS = 4
FULL_DIGITS = 6

VIEW_STAFF, VIEW_CUSTOMER, VIEW_MEMBER = "staff", "customer", "member"
VIEWS = (VIEW_STAFF, VIEW_CUSTOMER, VIEW_MEMBER)
_VIEW_ROLE = {VIEW_STAFF: ROLE_STAFF, VIEW_CUSTOMER: ROLE_CUSTOMER, VIEW_MEMBER: ROLE_RIDER}


def role_view(role: str) -> str:
    if role == ROLE_STAFF:
        return VIEW_STAFF
    if role == ROLE_CUSTOMER:
        return VIEW_CUSTOMER
    return VIEW_MEMBER


def view_role(view: str) -> str:
    return _VIEW_ROLE[view]


def position_digits(role: str) -> int:
    return CUSTOMER_DIGITS if role == ROLE_CUSTOMER else FULL_DIGITS


def live_position_visible(role: str, *, status: int) -> bool:
    return role != ROLE_CUSTOMER or status == OrderStatus.DELIVERING


def path_visible(role: str, *, dispatched: bool) -> bool:
    """The recorded path (trajectory, replay): customers see it from dispatch on, also after delivery."""
    return role != ROLE_CUSTOMER or dispatched


def flagged_points_visible(role: str) -> bool:
    """Points flagged by the GPS quality rule, with their flags: staff only (on the trajectory and the events)."""
    return role == ROLE_STAFF


def _coarse(position: dict[str, Any] | None, role: str) -> dict[str, Any] | None:
    if position is None or role != ROLE_CUSTOMER:
        return position
    digits = position_digits(role)
    return {**position, "lat": round(position["lat"], digits), "lon": round(position["lon"], digits)}


def order_for_role(snapshot: dict[str, Any], role: str, *, status: int) -> dict[str, Any]:
    """A full snapshot (or a `changes` dict) as `role` sees it; `status` is the order's current status."""
    filtered = dict(snapshot)
    if role != ROLE_STAFF:
        filtered.pop("alerts", None)
    if role == ROLE_CUSTOMER:
        if filtered.get("rider"):
            filtered["rider"] = {"name": filtered["rider"]["name"]}
        if "rider_position" in filtered:
            visible = live_position_visible(role, status=status)
            filtered["rider_position"] = _coarse(filtered["rider_position"], role) if visible else None
    return filtered


def event_for_role(payload: dict[str, Any], role: str) -> dict[str, Any]:
    """One event (tracking.wire.event_payload) as `role` sees it."""
    if role == ROLE_STAFF:
        return payload
    filtered = dict(payload)
    flags = filtered.pop("quality_flags", None)
    if flags and not flagged_points_visible(role):
        filtered["lat"] = filtered["lon"] = None
    if payload["kind"] == EventKind.ALERT:
        filtered["data"] = {}
    if role == ROLE_CUSTOMER:
        if payload["kind"] != EventKind.ETA:
            filtered["data"] = {}
        if payload["kind"] == EventKind.LOCATION and not live_position_visible(role, status=payload["status"]):
            filtered["lat"] = filtered["lon"] = None
        elif filtered["lat"] is not None and filtered["lon"] is not None:
            filtered.update(_coarse({"lat": filtered["lat"], "lon": filtered["lon"]}, role))
    return filtered
