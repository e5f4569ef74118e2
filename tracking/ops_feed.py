"""This process's feed for /ws/ops/: one subscription, rider moves coalesced into one frame a second.

Every GPS point publishes an `ops.rider` message. Forwarding each to each
staff socket costs a frame per point per socket; instead one subscriber per
process (per event loop) keeps the newest position of every rider that
moved and, at most once per OPS_FLUSH_SECONDS, sends one `ops.riders` frame
(encoded once) to every ops socket of the process. Alerts are rare and go
out at once.
"""

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from tracking.publish import OPS_GROUP
from xiaoxiang import metrics
from xiaoxiang.sockets import PerLoop

logger = logging.getLogger(__name__)


class OpsSocket(Protocol):
    """What the feed needs of an ops socket (tracking.consumers.OpsConsumer)."""

    channel_name: str

    async def forward(self, text: str) -> None: ...


class OpsFeed:
    def __init__(self) -> None:
        self.sockets: set[OpsSocket] = set()
        self.moved: dict[Any, dict[str, Any]] = {}
        self.task: asyncio.Task | None = None
        self.subscribed = asyncio.Event()

    async def add(self, socket: OpsSocket) -> None:
        """Start feeding `socket`; returns once this process is subscribed (so nothing after it is missed)."""
        self.sockets.add(socket)
        if self.task is None or self.task.done():
            self.subscribed.clear()
            self.task = asyncio.create_task(self._run())
        await self.subscribed.wait()

    def discard(self, socket: OpsSocket) -> None:
        self.sockets.discard(socket)
        if not self.sockets and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel("ops-feed.")
        await layer.group_add(OPS_GROUP, channel)
        self.subscribed.set()
        loop = asyncio.get_running_loop()
        flush_at: float | None = None
        first_move: dict[str, Any] = {}
        # One receive at a time, never cancelled but at the end: a cancelled
        # receive makes the pub/sub layer drop the channel.
        receiving = asyncio.ensure_future(layer.receive(channel))
        try:
            while self.sockets:
                timeout = None if flush_at is None else max(0.0, flush_at - loop.time())
                await asyncio.wait({receiving}, timeout=timeout)
                if receiving.done():
                    message = receiving.result()
                    receiving = asyncio.ensure_future(layer.receive(channel))
                    if message.get("type") == "ops.rider":
                        self.moved[message["rider"]["id"]] = message["rider"]
                        if flush_at is None:
                            flush_at = loop.time() + settings.OPS_FLUSH_SECONDS
                            first_move = message
                    elif message.get("type") == "ops.alert":
                        await self.broadcast(json.dumps({"type": "ops.alert", "alert": message["alert"]}), message)
                if flush_at is not None and loop.time() >= flush_at:
                    riders, self.moved, flush_at = list(self.moved.values()), {}, None
                    # Timed from the oldest move in the frame: the longest any of them waited.
                    await self.broadcast(json.dumps({"type": "ops.riders", "riders": riders}), first_move)
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiving
            with contextlib.suppress(Exception):
                await layer.group_discard(OPS_GROUP, channel)

    async def broadcast(self, text: str, message: dict[str, Any]) -> None:
        for socket in list(self.sockets):
            try:
                await socket.forward(text)
            except Exception:
                logger.exception("ops frame to %s failed", socket.channel_name)
            else:
                metrics.frame_written("ops", message)


_feeds = PerLoop(lambda loop: OpsFeed())


def ops_feed() -> OpsFeed:
    """This event loop's (this process's) ops feed."""
    return _feeds.get()
