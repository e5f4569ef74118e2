"""The channel layer: channels-redis's pub/sub layer, going on without Redis while it is away.

Subscribing (a socket's channel, a group) is what needs Redis; the layer
keeps its memberships in the process. When Redis is unreachable a subscribe
is logged, counted (xiaoxiang_redis_unavailable_total{use="layer"}) and
skipped instead of failing the socket's handshake or the long-poll: those
are then served from the database by the sockets' catch-up and the poll's
recheck, and the sockets' periodic rejoin subscribes again once Redis is
back. Subscriptions made before the outage come back by themselves (redis-py
resubscribes when its subscriber reconnects).
"""

import asyncio
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from xiaoxiang.cache import REDIS_DOWN, redis_unavailable

# As xiaoxiang.cache's clients: fail fast instead of redis-py's ten retries with backoff.
ASYNC_REDIS_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1.0, "retry": Retry(NoBackoff(), 1)}


class PubSubLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for shard in self._shards:
            shard.host = {**ASYNC_REDIS_OPTIONS, **shard.host}

    async def _subscribe_to_channel(self, channel: str) -> None:
        try:
            await super()._subscribe_to_channel(channel)
        except REDIS_DOWN as error:
            redis_unavailable("layer", error)

    async def group_add(self, group: str, channel: str) -> None:
        try:
            await super().group_add(group, channel)
        except REDIS_DOWN as error:
            redis_unavailable("layer", error)

    async def group_discard(self, group: str, channel: str) -> None:
        try:
            await super().group_discard(group, channel)
        except REDIS_DOWN as error:
            redis_unavailable("layer", error)


class PubSubChannelLayer(RedisPubSubChannelLayer):
    def _get_layer(self) -> PubSubLoopLayer:
        # RedisPubSubChannelLayer._get_layer, making our loop layer.
        loop = asyncio.get_running_loop()
        if loop not in self._layers:
            self._layers[loop] = PubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return self._layers[loop]
