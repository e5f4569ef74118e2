"""WebSocket consumers: /ws/orders/{id}/ and /ws/ops/ (DESIGN.md section 5).

They authorize with the REST selectors and forward what the publish path
(tracking.publish) already shaped; authentication, limits and the heartbeat
come from xiaoxiang.sockets.StreamConsumer.
"""

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from orders.models import Order
from orders.selectors import order_access_for_user, order_get_for_user, order_visible_to, viewer_role
from tracking.ops import ops_state
from tracking.ops_feed import ops_feed
from tracking.publish import order_group
from tracking.role_views import VIEW_STAFF, role_view
from tracking.snapshot import order_snapshot_for_role, order_versions_hint
from tracking.stream import order_resync_frames
from xiaoxiang import metrics
from xiaoxiang.cache import redis_failed_within
from xiaoxiang.errors import NotFound
from xiaoxiang.sockets import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, StreamConsumer, db_read

logger = logging.getLogger(__name__)


def _order_open(user: AbstractBaseUser, order_id: str) -> tuple[str, dict[str, Any]]:
    order = order_access_for_user(user=user, order_id=order_id)
    role = viewer_role(user=user, order=order)
    return role, order_snapshot_for_role(order=order, role=role)


def _order_resync(user: AbstractBaseUser, order_id: str, since_version: int) -> list[dict[str, Any]]:
    # Visibility is checked again: a client's resync is a read like the REST detail.
    order = order_get_for_user(user=user, order_id=order_id)
    return order_resync_frames(
        order=order,
        role=viewer_role(user=user, order=order),
        since_version=since_version,
        max_events=settings.WS_RESYNC_MAX_EVENTS,
    )


def _order_repair(order_id: str, role: str, since_version: int) -> tuple[Order, list[dict[str, Any]]]:
    order = Order.objects.select_related("warehouse", "rider", "rider__rider_profile").filter(pk=order_id).first()
    if order is None:
        raise NotFound()
    frames = order_resync_frames(
        order=order, role=role, since_version=since_version, max_events=settings.WS_RESYNC_MAX_EVENTS
    )
    return order, frames


# Server-side repairs in flight, per (order, view, since): when a publish is
# lost, every socket of that order in this process notices at once, and one
# database read serves them all instead of one read per socket.
_repairs: dict[tuple[str, str, int], asyncio.Future] = {}


async def _shared_repair(order_id: str, role: str, since_version: int) -> tuple[Order, list[dict[str, Any]]]:
    key = (order_id, role_view(role), since_version)
    future = _repairs.get(key)
    if future is None or future.get_loop() is not asyncio.get_running_loop():
        future = asyncio.ensure_future(db_read(_order_repair)(order_id, role, since_version))
        _repairs[key] = future
        future.add_done_callback(lambda done: _repairs.pop(key, None) if _repairs.get(key) is done else None)
    return await asyncio.shield(future)


class OrderConsumer(StreamConsumer):
    """/ws/orders/{id}/: snapshot, then events in strictly increasing version order."""

    async def opened(self) -> None:
        self.order_id: str = self.scope["url_route"]["kwargs"]["order_id"]
        self.version: int | None = None
        self.behind_at: int | None = None
        # Join before reading the snapshot, so no event can fall between them;
        # events already in the snapshot are skipped by version.
        await self.join(order_group(self.order_id))
        try:
            self.role, order = await db_read(_order_open)(self.user, self.order_id)
        except NotFound:
            await self.deny(CLOSE_NOT_FOUND)
            return
        async with self.send_lock:
            await self.send_json({"type": "snapshot", "version": order["version"], "order": order})
            self.version = order["version"]

    @classmethod
    async def housekeeping_context(cls, sockets: list[StreamConsumer]) -> dict[str, int]:
        # Every watched order's newest version in one cache read. A publish
        # missed while the layer's subscriber reconnected is found here
        # within two ticks, instead of waiting for the heartbeat.
        order_ids = {socket.order_id for socket in sockets if getattr(socket, "version", None) is not None}
        # A cache read; the database only for versions the cache lost.
        return await db_read(order_versions_hint)(order_ids=order_ids)

    async def housekeeping(self, versions: dict[str, int], *, beat: bool) -> None:
        if beat:
            await self.rejoin()
        async with self.send_lock:
            if self.closing or self.version is None:
                return
            if await self.repair_lost_publish(versions.get(self.order_id)) and beat and not self.closing:
                await self.heartbeat()

    async def order_events(self, message: dict[str, Any]) -> None:
        if self.version is None or self.closing:
            return
        view = role_view(self.role)
        async with self.send_lock:
            for payload, step, frame in zip(
                message["events"], message["changes"], message["frames"][view], strict=True
            ):
                if payload["version"] <= self.version:
                    continue
                if payload["version"] != self.version + 1:
                    # A message was missed (layer hiccup, subscriber reconnect):
                    # catch up from the database so the client still sees every version.
                    metrics.repaired("version_gap")
                    await self.resync_from(self.version, shared=True)
                    return
                if "rider" in step[VIEW_STAFF]:
                    # A new rider can mean this user no longer sees the order (a rider taken
                    # off it): the repair delivers the event after re-checking visibility.
                    metrics.repaired("rider_changed")
                    await self.resync_from(self.version, shared=True)
                    return
                await self.send(text_data=frame)
                self.version = payload["version"]
                metrics.frame_written("orders", message)

    async def receive_message(self, content: dict[str, Any]) -> None:
        if content["type"] != "resync":
            await super().receive_message(content)
            return
        since_version = content.get("since_version")
        if not isinstance(since_version, int) or isinstance(since_version, bool) or since_version < 0:
            await self.send_json({"type": "error", "detail": "since_version must be a non-negative integer."})
            return
        if self.version is None:
            return
        async with self.send_lock:
            if not await self.resync_from(since_version):
                await self.heartbeat()

    async def resync_from(self, since_version: int, *, shared: bool = False) -> bool:
        """Send what a client at `since_version` missed; False when it missed nothing. Hold send_lock.

        `shared`: a server-side repair (lost publish, or the order's rider changed), answered
        from one read per order and process; each socket checks on it that its user may still
        see the order, like a client's resync does through the selector, and closes 4404 if not.
        """
        try:
            if shared:
                order, frames = await _shared_repair(self.order_id, self.role, since_version)
                # On the thread pool: a session user's role may need its groups read.
                if not await db_read(order_visible_to)(user=self.user, order=order):
                    raise NotFound()
            else:
                frames = await db_read(_order_resync)(self.user, self.order_id, since_version)
        except NotFound:
            await self.deny(CLOSE_NOT_FOUND)
            return True
        if shared:
            # A shared answer may start before this socket's version: skip what it already sent.
            frames = [frame for frame in frames if frame["type"] == "snapshot" or frame["version"] > self.version]
        for frame in frames:
            await self.send_json(frame)
        if frames:
            self.version = frames[-1]["version"]
        return bool(frames)

    async def repair_lost_publish(self, current: int | None) -> bool:
        """Repair a publish missing since the previous check; False when the order is gone. Hold send_lock.

        `current` is the order's newest published version (None: the order is gone).
        """
        if current is None:
            await self.deny(CLOSE_NOT_FOUND)
            return False
        # Behind the version the order had at the previous check: that publish
        # is not merely in flight but lost or held back, so repair from the
        # database. (Repairing on any lag would turn a busy moment into a read
        # per socket.) While Redis is away, or just back, publishes are lost,
        # not late: repair at once.
        lost = current > self.version and redis_failed_within(settings.WS_CATCH_UP_SECONDS * 2)
        if lost or (self.behind_at is not None and self.version < self.behind_at):
            metrics.repaired("catch_up")
            await self.resync_from(self.version, shared=True)
        self.behind_at = current if current > self.version else None
        return True

    async def heartbeat(self) -> None:
        await self.send_json({"type": "heartbeat", "version": self.version, "server_time": timezone.now().isoformat()})


class OpsConsumer(StreamConsumer):
    """/ws/ops/: staff only; every active rider's position and every alert (fed by tracking.ops_feed)."""

    async def opened(self) -> None:
        self.ready = False
        if not self.user.is_staff:
            await self.deny(CLOSE_FORBIDDEN)
            return
        # Subscribed before the state is read, so no move falls between them.
        await ops_feed().add(self)
        state = await db_read(ops_state)()
        async with self.send_lock:
            await self.send_json({"type": "ops.snapshot", **state})
            self.ready = True

    async def forward(self, text: str) -> None:
        """A frame of the process's ops feed (riders moved, an alert)."""
        if not self.ready or self.closing:
            return
        async with self.send_lock:
            await self.send(text_data=text)

    async def disconnect(self, code: int) -> None:
        ops_feed().discard(self)
        await super().disconnect(code)
