"""WebSocket consumers: /ws/orders/{id}/ and /ws/ops/ (DESIGN.md section 5).

StreamConsumer holds what every socket shares: authentication (session
cookie or a first-message JWT), the 4401/4429 rules, the heartbeat and the
connection slots. The subclasses authorize with the REST selectors and
forward what the publish path (tracking.realtime) already shaped.
"""

import asyncio
import json
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken

from orders.errors import NotFound
from orders.models import Order
from orders.selectors import order_get_for_user, order_snapshot, snapshot_for_role, viewer_role
from tracking import realtime
from tracking.conf import connection_slot_ttl, realtime_setting
from xiaoxiang import metrics

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429


def _user_from_token(token: str) -> tuple[AbstractBaseUser, float]:
    """The active user a valid, unexpired, unrevoked access token names, and its expiry (epoch seconds)."""
    validated = AccessToken(token)
    user = JWTAuthentication().get_user(validated)
    return user, float(validated["exp"])


def _hints(method):
    # Cache reads only (Redis): off the shared database thread as well.
    return sync_to_async(method, thread_sensitive=False)


def _slots(method):
    # Redis only, no database: off the shared database thread, so slot
    # bookkeeping never queues behind other sockets' queries.
    return sync_to_async(method, thread_sensitive=False)


class MessageBucket:
    """Token bucket: `rate` messages per second with a burst of `rate`."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.updated_at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.updated_at) * self.rate)
        self.updated_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class StreamConsumer(AsyncJsonWebsocketConsumer):
    """Authentication, limits and heartbeat for every socket; subclasses implement `opened`."""

    async def connect(self) -> None:
        self.user: AbstractBaseUser | None = None
        self.closing = False
        self.joined: list[str] = []
        self.slots: list[str] = []
        self.tasks: list[asyncio.Task] = []
        self.expiry_task: asyncio.Task | None = None
        self.auth_task: asyncio.Task | None = None
        # The heartbeat runs beside the message loop; both send frames.
        self.send_lock = asyncio.Lock()
        self.bucket = MessageBucket(realtime_setting("WS_MAX_MESSAGES_PER_SECOND"))
        # Accept first: close codes only exist on an open socket.
        await self.accept()
        metrics.ws_opened(self.scope)
        client = self.scope.get("client") or ["unknown"]
        if not await self.slot_take(f"ip:{client[0]}", realtime_setting("WS_MAX_CONNECTIONS_PER_IP")):
            await self.deny(CLOSE_TOO_MANY)
            return
        # The Origin check strips cookies from handshakes without Origin, so
        # a user here came from a same-site browser session.
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            await self.authenticated(user, expires_at=None)
        else:
            self.auth_task = asyncio.create_task(self._auth_deadline())

    async def disconnect(self, code: int) -> None:
        metrics.ws_closed(self.scope, code)
        self.closing = True
        for task in [*self.tasks, self.auth_task, self.expiry_task]:
            if task is not None:
                task.cancel()
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        for scope in getattr(self, "slots", []):
            await _slots(realtime.connection_slots.release)(scope=scope, member=self.channel_name)

    async def deny(self, code: int) -> None:
        if not self.closing:
            metrics.ws_denied(self.scope, code)
            self.closing = True
            await self.close(code=code)

    # --- client frames ---------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > realtime_setting("WS_MAX_FRAME_BYTES") or not self.bucket.take():
            await self.deny(CLOSE_TOO_MANY)
            return
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            if self.user is None:
                await self.deny(CLOSE_UNAUTHENTICATED)
            else:
                await self.send_json({"type": "error", "detail": 'Send a JSON object with a "type".'})
            return
        if content["type"] == "auth":
            await self.authenticate_token(content.get("token"))
        elif self.user is None:
            await self.deny(CLOSE_UNAUTHENTICATED)
        else:
            await self.receive_message(content)

    async def receive_message(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "error", "detail": f"Unknown message type {content['type']!r}."})

    # --- authentication ----------------------------------------------------------

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(realtime_setting("WS_AUTH_TIMEOUT_SECONDS"))
        if self.user is None:
            await self.deny(CLOSE_UNAUTHENTICATED)

    async def _expire_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.deny(CLOSE_UNAUTHENTICATED)

    async def authenticate_token(self, token: Any) -> None:
        if not isinstance(token, str) or not token:
            await self.deny(CLOSE_UNAUTHENTICATED)
            return
        try:
            user, expires_at = await database_sync_to_async(_user_from_token)(token)
        except (TokenError, InvalidToken, AuthenticationFailed):
            await self.deny(CLOSE_UNAUTHENTICATED)
            return
        if self.user is None:
            await self.authenticated(user, expires_at=expires_at)
        elif user.pk == self.user.pk:
            # A fresh token for the same user extends the socket's life.
            self._schedule_expiry(expires_at)
        else:
            await self.deny(CLOSE_UNAUTHENTICATED)

    def _schedule_expiry(self, expires_at: float | None) -> None:
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        self.expiry_task = asyncio.create_task(self._expire_at(expires_at)) if expires_at is not None else None

    async def authenticated(self, user: AbstractBaseUser, *, expires_at: float | None) -> None:
        if self.auth_task is not None:
            self.auth_task.cancel()
        if not await self.slot_take(f"user:{user.pk}", realtime_setting("WS_MAX_CONNECTIONS_PER_USER")):
            await self.deny(CLOSE_TOO_MANY)
            return
        self.user = user
        self._schedule_expiry(expires_at)
        await self.opened()
        if not self.closing:
            self.tasks.append(asyncio.create_task(self._heartbeat_loop()))

    async def opened(self) -> None:
        """Authorize, join groups and send the first frame; close with a code when not allowed."""
        raise NotImplementedError

    # --- groups, slots, heartbeat ------------------------------------------------

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        if group not in self.joined:
            self.joined.append(group)

    async def slot_take(self, scope: str, limit: int) -> bool:
        taken = await _slots(realtime.connection_slots.acquire)(
            scope=scope, member=self.channel_name, limit=limit, ttl=connection_slot_ttl()
        )
        if taken:
            self.slots.append(scope)
        return taken

    async def _heartbeat_loop(self) -> None:
        while not self.closing:
            await asyncio.sleep(realtime_setting("WS_HEARTBEAT_SECONDS"))
            try:
                # Re-join: group membership expires (group_expiry) unless renewed.
                for group in self.joined:
                    await self.channel_layer.group_add(group, self.channel_name)
                for scope in self.slots:
                    await _slots(realtime.connection_slots.renew)(
                        scope=scope, member=self.channel_name, ttl=connection_slot_ttl()
                    )
                async with self.send_lock:
                    if not self.closing:
                        await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                # One failed beat (Redis hiccup) must not end the socket's heartbeat.
                logger.exception("heartbeat failed on %s", self.channel_name)

    async def heartbeat(self) -> None:
        await self.send_json({"type": "heartbeat", "server_time": timezone.now().isoformat()})


def _order_open(user: AbstractBaseUser, order_id: str) -> tuple[str, dict[str, Any]]:
    order = order_get_for_user(user=user, order_id=order_id)
    role = viewer_role(user=user, order=order)
    snapshot = order_snapshot(order=order)
    return role, snapshot_for_role(snapshot, role, status=snapshot["status"])


def _order_resync(user: AbstractBaseUser, order_id: str, since_version: int) -> list[dict[str, Any]]:
    # Visibility is checked again: a client's resync is a read like the REST detail.
    order = order_get_for_user(user=user, order_id=order_id)
    return realtime.order_resync_frames(
        order=order,
        role=viewer_role(user=user, order=order),
        since_version=since_version,
        max_events=realtime_setting("WS_RESYNC_MAX_EVENTS"),
    )


def _order_repair(order_id: str, role: str, since_version: int) -> list[dict[str, Any]]:
    order = Order.objects.select_related("warehouse", "rider", "rider__rider_profile").filter(pk=order_id).first()
    if order is None:
        raise NotFound()
    return realtime.order_resync_frames(
        order=order, role=role, since_version=since_version, max_events=realtime_setting("WS_RESYNC_MAX_EVENTS")
    )


# Server-side repairs in flight, per (order, view, since): when a publish is
# lost, every socket of that order in this process notices at once, and one
# database read serves them all instead of one read per socket.
_repairs: dict[tuple[str, str, int], asyncio.Future] = {}


async def _shared_repair(order_id: str, role: str, since_version: int) -> list[dict[str, Any]]:
    key = (order_id, realtime.role_view(role), since_version)
    future = _repairs.get(key)
    if future is None or future.get_loop() is not asyncio.get_running_loop():
        future = asyncio.ensure_future(database_sync_to_async(_order_repair)(order_id, role, since_version))
        _repairs[key] = future
        future.add_done_callback(lambda done: _repairs.pop(key, None) if _repairs.get(key) is done else None)
    return await asyncio.shield(future)


class OrderConsumer(StreamConsumer):
    """/ws/orders/{id}/: snapshot, then events in strictly increasing version order."""

    async def opened(self) -> None:
        self.order_id: str = self.scope["url_route"]["kwargs"]["order_id"]
        self.version: int | None = None
        self.behind_at: int | None = None
        if not realtime.order_id_valid(self.order_id):
            await self.deny(CLOSE_NOT_FOUND)
            return
        # Join before reading the snapshot, so no event can fall between them;
        # events already in the snapshot are skipped by version.
        await self.join(realtime.order_group(self.order_id))
        try:
            self.role, order = await database_sync_to_async(_order_open)(self.user, self.order_id)
        except NotFound:
            await self.deny(CLOSE_NOT_FOUND)
            return
        async with self.send_lock:
            await self.send_json({"type": "snapshot", "version": order["version"], "order": order})
            self.version = order["version"]
        self.tasks.append(asyncio.create_task(self._catch_up_loop()))

    async def _catch_up_loop(self) -> None:
        # channels-redis can hold a message back (a socket of the same process
        # disconnecting mid-receive) or drop it; waiting for the heartbeat
        # would leave the client up to two beats behind, so glance between beats.
        while not self.closing:
            await asyncio.sleep(realtime_setting("WS_CATCH_UP_SECONDS"))
            try:
                async with self.send_lock:
                    if not self.closing:
                        await self.repair_lost_publish()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("catch-up check failed on %s", self.channel_name)

    async def order_events(self, message: dict[str, Any]) -> None:
        if self.version is None or self.closing:
            return
        view = realtime.role_view(self.role)
        async with self.send_lock:
            for payload, changes in zip(message["events"], message["changes"], strict=True):
                if payload["version"] <= self.version:
                    continue
                if payload["version"] != self.version + 1:
                    # A message was dropped (full channel, layer hiccup): catch
                    # up from the database so the client still sees every version.
                    metrics.repaired("version_gap")
                    await self.resync_from(self.version, shared=True)
                    return
                await self.send_json(
                    {
                        "type": "event",
                        "version": payload["version"],
                        "event": realtime.event_for_role(payload, self.role),
                        "changes": changes[view],
                    }
                )
                metrics.frame_written("orders", message)
                self.version = payload["version"]

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

        `shared`: a server-side repair (lost publish), answered from one read per order and process.
        """
        try:
            if shared:
                frames = await _shared_repair(self.order_id, self.role, since_version)
            else:
                frames = await database_sync_to_async(_order_resync)(self.user, self.order_id, since_version)
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

    async def repair_lost_publish(self) -> bool:
        """Repair a publish missing since the previous check; False when the order is gone. Hold send_lock."""
        if self.version is None:
            return True
        current = await _hints(realtime.order_version_hint)(order_id=self.order_id)
        if current is None:
            await self.deny(CLOSE_NOT_FOUND)
            return False
        # Behind the version the order had at the previous check: that publish
        # is not merely in flight but lost or held back, so repair from the
        # database. (Repairing on any lag would turn a busy moment into a read
        # per socket.)
        if self.behind_at is not None and self.version < self.behind_at:
            metrics.repaired("catch_up")
            await self.resync_from(self.version, shared=True)
        self.behind_at = current if current > self.version else None
        return True

    async def heartbeat(self) -> None:
        if self.version is None or not await self.repair_lost_publish():
            return
        if not self.closing:
            await self.send_json(
                {"type": "heartbeat", "version": self.version, "server_time": timezone.now().isoformat()}
            )


class OpsConsumer(StreamConsumer):
    """/ws/ops/: staff only; every active rider's position and every alert."""

    async def opened(self) -> None:
        if not self.user.is_staff:
            await self.deny(CLOSE_FORBIDDEN)
            return
        await self.join(realtime.OPS_GROUP)
        state = await database_sync_to_async(realtime.ops_state)()
        async with self.send_lock:
            await self.send_json(state)

    async def ops_rider(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.send_json({"type": "ops.rider", "rider": message["rider"]})
        metrics.frame_written("ops", message)

    async def ops_alert(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.send_json({"type": "ops.alert", "alert": message["alert"]})
        metrics.frame_written("ops", message)
