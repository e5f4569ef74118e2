"""What every WebSocket shares (DESIGN.md section 5): authentication, limits, heartbeat.

StreamConsumer authenticates by session cookie or a first-message JWT,
applies the 4401/4429 rules and the connection slots, and beats; the apps'
consumers subclass it and implement `opened`.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis
from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken

from xiaoxiang import metrics
from xiaoxiang.auth import RoleJWTAuthentication
from xiaoxiang.cache import REDIS_CLIENT_OPTIONS, REDIS_DOWN, redis_unavailable
from xiaoxiang.errors import DATABASE_DOWN
from xiaoxiang.payloads import PayloadError, json_decode

logger = logging.getLogger(__name__)


class ConnectionSlots:
    """Counts open sockets per user and per IP: a Redis sorted set per key (member: socket, score: lease end).

    Leases expire unless the socket's heartbeat renews them, so a daphne
    process that dies without running disconnect frees its slots by itself.
    Without REDIS_URL there is one process, and a dict does the same job; it
    also stands in (per process) while Redis is unreachable.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local: dict[str, dict[str, float]] = defaultdict(dict)
        self._redis = None

    def _client(self):
        if not settings.REDIS_URL:
            return None
        if self._redis is None:
            self._redis = redis.Redis.from_url(settings.REDIS_URL, **REDIS_CLIENT_OPTIONS)
        return self._redis

    @staticmethod
    def _key(scope: str) -> str:
        return f"xiaoxiang:ws-slots:{scope}"

    def acquire(self, *, scope: str, member: str, limit: int, ttl: float) -> bool:
        """Take a slot; False when `limit` sockets already hold one."""
        client = self._client()
        if client is not None:
            try:
                return self._redis_acquire(client, scope=scope, member=member, limit=limit, ttl=ttl)
            except REDIS_DOWN as error:
                redis_unavailable("slots", error)
        now = time.time()
        with self._lock:
            leases = self._local[scope]
            for expired in [name for name, until in leases.items() if until <= now]:
                del leases[expired]
            if member not in leases and len(leases) >= limit:
                return False
            leases[member] = now + ttl
            return True

    def _redis_acquire(self, client, *, scope: str, member: str, limit: int, ttl: float) -> bool:
        now = time.time()
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

    def renew_many(self, *, leases: list[tuple[str, str]], ttl: float) -> None:
        """Renew many (scope, member) leases at once: one pipelined round trip for a whole process."""
        if not leases:
            return
        until = time.time() + ttl
        with self._lock:
            for scope, member in leases:
                if member in self._local[scope]:
                    self._local[scope][member] = until
        client = self._client()
        if client is None:
            return
        pipe = client.pipeline(transaction=False)
        for scope in {scope for scope, _ in leases}:
            pipe.expire(self._key(scope), int(ttl) + 1)
        for scope, member in leases:
            pipe.zadd(self._key(scope), {member: until}, xx=True)
        try:
            pipe.execute()
        except REDIS_DOWN as error:
            redis_unavailable("slots", error)

    def release(self, *, scopes: list[str], member: str) -> None:
        """Give back a socket's slots (all its scopes in one round trip)."""
        with self._lock:
            for scope in scopes:
                self._local[scope].pop(member, None)
        client = self._client()
        if client is None:
            return
        pipe = client.pipeline(transaction=False)
        for scope in scopes:
            pipe.zrem(self._key(scope), member)
        try:
            pipe.execute()
        except REDIS_DOWN as error:
            redis_unavailable("slots", error)


connection_slots = ConnectionSlots()


def connection_slot_ttl() -> float:
    """How long a socket's connection slot lives unless its heartbeat refreshes it.

    Covers daphne processes that die without running disconnect: their slots
    lapse instead of locking users out forever.
    """
    return settings.WS_HEARTBEAT_SECONDS * 3 + 5


CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429

# Sent to a session's group when it logs out (access.signals): its sockets close 4401.
SESSION_ENDED = "session.ended"


def session_group(session_key: str) -> str:
    """The group of every socket opened with one session; the key is hashed, so no session id is published."""
    return f"session.{hashlib.sha256(session_key.encode()).hexdigest()[:32]}"


def _user_from_token(token: str) -> tuple[AbstractBaseUser, float]:
    """The active user a valid, unexpired, unrevoked access token names, and its expiry (epoch seconds)."""
    validated = AccessToken(token)
    user = RoleJWTAuthentication().get_user(validated)  # the user and their role group in one query
    return user, float(validated["exp"])


def db_read(function):
    """Run a database read for a socket on the thread pool.

    channels' database_sync_to_async runs every call of the process on one
    shared thread, so a reconnect storm queues behind it; reads have no
    thread affinity, and each pool thread keeps its own connection.
    """
    return database_sync_to_async(function, thread_sensitive=False)


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


class Housekeeping:
    """One timer per process (event loop) for all its sockets, instead of two tasks per socket.

    Every WS_CATCH_UP_SECONDS each socket class gets one batched read for
    all its sockets (e.g. one MGET of every watched order's version) and
    each socket acts on it, usually by doing nothing; every
    WS_HEARTBEAT_SECONDS the process also renews all its connection slots in
    one pipelined Redis call, and every socket re-joins its groups and beats.
    """

    def __init__(self) -> None:
        self.sockets: dict[StreamConsumer, None] = {}
        self.task: asyncio.Task | None = None

    def add(self, socket: "StreamConsumer") -> None:
        self.sockets[socket] = None
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def discard(self, socket: "StreamConsumer") -> None:
        self.sockets.pop(socket, None)
        if not self.sockets and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while self.sockets:
            await asyncio.sleep(min(settings.WS_CATCH_UP_SECONDS, settings.WS_HEARTBEAT_SECONDS))
            # A beat is due when a beat interval has passed (with a little slack for the sleep's jitter).
            beat = loop.time() - last_beat >= settings.WS_HEARTBEAT_SECONDS * 0.95
            if beat:
                last_beat = loop.time()
            try:
                await self.tick(beat=beat)
            except asyncio.CancelledError:
                raise
            except Exception:
                # One failed tick (Redis hiccup) must not end the process's housekeeping.
                logger.exception("socket housekeeping failed")

    async def tick(self, *, beat: bool) -> None:
        sockets = [socket for socket in self.sockets if not socket.closing]
        if beat:
            leases = [(scope, socket.channel_name) for socket in sockets for scope in socket.slots]
            await _slots(connection_slots.renew_many)(leases=leases, ttl=connection_slot_ttl())
        by_class: dict[type[StreamConsumer], list[StreamConsumer]] = defaultdict(list)
        for socket in sockets:
            by_class[type(socket)].append(socket)
        for socket_class, members in by_class.items():
            context = await socket_class.housekeeping_context(members)
            for socket in members:
                try:
                    await socket.housekeeping(context, beat=beat)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("housekeeping failed on %s", socket.channel_name)


T = TypeVar("T")


class PerLoop(Generic[T]):
    """One instance per event loop (a daphne process has one; each test run its own), made on first use."""

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self.factory = factory
        self.instances: dict[asyncio.AbstractEventLoop, T] = {}

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if loop not in self.instances:
            # Loops of finished test runs are closed: forget them.
            for stale in [other for other in self.instances if other.is_closed()]:
                del self.instances[stale]
            self.instances[loop] = self.factory(loop)
        return self.instances[loop]


def _new_housekeeping(loop: asyncio.AbstractEventLoop) -> Housekeeping:
    keeper = Housekeeping()
    _close_on_sigterm(loop, keeper)
    return keeper


_housekeeping = PerLoop(_new_housekeeping)


def housekeeping() -> Housekeeping:
    """This event loop's (this process's) housekeeping."""
    return _housekeeping.get()


CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013  # the database is unreachable


def _close_on_sigterm(loop: asyncio.AbstractEventLoop, keeper: Housekeeping) -> None:
    """In a daphne process, answer SIGTERM by closing every socket with 1012 first, then stopping as before.

    Daphne alone would drop the sockets (clients see 1006 and wait out a
    dead-socket timeout); 1012 (service restart) tells them to reconnect at
    once, with the jittered backoff they already have. Installed with the
    first socket, after Twisted installed its own handler, which still runs.
    """
    if "daphne" not in sys.argv[0] or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    async def close_all_then_stop() -> None:
        sockets = list(keeper.sockets)
        logger.warning("SIGTERM: closing %d sockets with %d", len(sockets), CLOSE_SERVICE_RESTART)
        for socket in sockets:
            with contextlib.suppress(Exception):
                await socket.deny(CLOSE_SERVICE_RESTART)
        await asyncio.sleep(0.2)  # let the close frames leave
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signal.SIGTERM, None)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(close_all_then_stop()))

    signal.signal(signal.SIGTERM, on_sigterm)


class StreamConsumer(AsyncJsonWebsocketConsumer):
    """Authentication, limits and heartbeat for every socket; subclasses implement `opened`."""

    async def connect(self) -> None:
        self.user: AbstractBaseUser | None = None
        self.closing = False
        self.joined: list[str] = []
        self.slots: list[str] = []
        self.expiry_task: asyncio.Task | None = None
        self.auth_task: asyncio.Task | None = None
        # Housekeeping (catch-up, heartbeat) runs beside the message loop; both send frames.
        self.send_lock = asyncio.Lock()
        self.bucket = MessageBucket(settings.WS_MAX_MESSAGES_PER_SECOND)
        # Accept first: close codes only exist on an open socket.
        await self.accept()
        metrics.ws_opened(self.scope)
        client = self.scope.get("client") or ["unknown"]
        if not await self.slot_take(f"ip:{client[0]}", settings.WS_MAX_CONNECTIONS_PER_IP):
            await self.deny(CLOSE_TOO_MANY)
            return
        # The Origin check strips cookies from handshakes without Origin, so
        # a user here came from a same-site browser session.
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            session_key = getattr(self.scope.get("session"), "session_key", None)
            if session_key:
                await self.join(session_group(session_key))
            await self.authenticated(user, expires_at=None)
        else:
            self.auth_task = asyncio.create_task(self._auth_deadline())

    async def disconnect(self, code: int) -> None:
        metrics.ws_closed(self.scope, code)
        self.closing = True
        housekeeping().discard(self)
        for task in [self.auth_task, self.expiry_task]:
            if task is not None:
                task.cancel()
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "slots", None):
            await _slots(connection_slots.release)(scopes=self.slots, member=self.channel_name)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes stale database connections
        # through a thread hop, before every message of every socket. Ours
        # touch the database only through db_read, which does that cleanup in
        # the thread it reads in; the hop per pushed frame was the largest
        # cost of the fan-out (docs/performance.md).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        try:
            await handler(message)
        except DATABASE_DOWN as error:
            # Not a server error (1011): the client reconnects with its backoff and resyncs.
            logger.warning("database unavailable on %s: %s", self.scope.get("path"), error)
            metrics.database_unavailable("ws")
            await self.deny(CLOSE_TRY_AGAIN_LATER)

    async def deny(self, code: int) -> None:
        if not self.closing:
            metrics.ws_denied(self.scope, code)
            self.closing = True
            await self.close(code=code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.WS_MAX_FRAME_BYTES or not self.bucket.take():
            await self.deny(CLOSE_TOO_MANY)
            return
        detail = 'Send a JSON object with a "type".'
        try:
            content = json_decode(text_data) if text_data is not None else None
        except PayloadError as error:  # too deep, not JSON, NUL or a lone surrogate
            content, detail = None, str(error)
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            if self.user is None:
                await self.deny(CLOSE_UNAUTHENTICATED)
            else:
                await self.send_json({"type": "error", "detail": detail})
            return
        if content["type"] == "auth":
            await self.authenticate_token(content.get("token"))
        elif self.user is None:
            await self.deny(CLOSE_UNAUTHENTICATED)
        else:
            await self.receive_message(content)

    async def receive_message(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "error", "detail": f"Unknown message type {content['type']!r}."})

    async def session_ended(self, message: dict[str, Any]) -> None:
        """The session this socket was opened with logged out."""
        await self.deny(CLOSE_UNAUTHENTICATED)

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT_SECONDS)
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
            user, expires_at = await db_read(_user_from_token)(token)
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
        if not await self.slot_take(f"user:{user.pk}", settings.WS_MAX_CONNECTIONS_PER_USER):
            await self.deny(CLOSE_TOO_MANY)
            return
        self.user = user
        self._schedule_expiry(expires_at)
        await self.opened()
        if not self.closing:
            housekeeping().add(self)

    async def opened(self) -> None:
        """Authorize, join groups and send the first frame; close with a code when not allowed."""
        raise NotImplementedError

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        if group not in self.joined:
            self.joined.append(group)

    async def slot_take(self, scope: str, limit: int) -> bool:
        taken = await _slots(connection_slots.acquire)(
            scope=scope, member=self.channel_name, limit=limit, ttl=connection_slot_ttl()
        )
        if taken:
            self.slots.append(scope)
        return taken

    @classmethod
    async def housekeeping_context(cls, sockets: list["StreamConsumer"]) -> Any:
        """One read shared by all of this process's sockets of this class at each housekeeping tick."""
        return None

    async def housekeeping(self, context: Any, *, beat: bool) -> None:
        """Act on a housekeeping tick; on a beat, re-join the groups and send a heartbeat."""
        if not beat:
            return
        await self.rejoin()
        async with self.send_lock:
            if not self.closing:
                await self.heartbeat()

    async def rejoin(self) -> None:
        # Layers with a group expiry drop memberships that are not renewed;
        # the pub/sub layer subscribes again what it could not while Redis
        # was away (xiaoxiang.layers), else it is a local no-op.
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def heartbeat(self) -> None:
        await self.send_json({"type": "heartbeat", "server_time": timezone.now().isoformat()})


class NoRouteConsumer(AsyncWebsocketConsumer):
    """Every socket path no route names, a malformed order id included: accepted, then closed 4404.

    Unrouted, Channels' URLRouter raises and Daphne answers the handshake with a 500.
    """

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
