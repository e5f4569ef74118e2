"""Best-effort sends to the Channels layer, for every app's live updates.

With Redis (channels-redis's RedisPubSubChannelLayer) a send is a Redis
PUBLISH on the channel the layer's subscribers listen to, in the layer's own
message format, made with a plain per-process Redis client: no event loop
and thread hop per call, and all of a commit's sends in one round trip.
Each daphne process subscribes once per group and fans a message out to its
own sockets. Other layers (the in-memory one of the embedded default) go
through the layer's API.
"""

import logging
import threading
from collections.abc import Iterable
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash, decode_hosts

from xiaoxiang import metrics

logger = logging.getLogger(__name__)

_clients: dict[int, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(host: dict[str, Any], index: int) -> redis.Redis:
    with _clients_lock:
        client = _clients.get(index)
        if client is None:
            options = {key: value for key, value in host.items() if key not in ("address", "master_name")}
            client = redis.Redis.from_url(host["address"], **options)
            _clients[index] = client
        return client


def _publish(layer: RedisPubSubChannelLayer, sends: list[tuple[str, dict[str, Any]]]) -> None:
    hosts = decode_hosts(layer._kwargs.get("hosts"))
    prefix = layer._kwargs.get("prefix", "asgi")
    pipelines: dict[int, redis.client.Pipeline] = {}
    for group, message in sends:
        # The names RedisPubSubLoopLayer.group_send uses: a group's Redis
        # channel, sharded over the hosts by the same consistent hash.
        channel = f"{prefix}__group__{group}"
        index = _consistent_hash(channel, len(hosts))
        if index not in pipelines:
            pipelines[index] = _client(hosts[index], index).pipeline(transaction=False)
        pipelines[index].publish(channel, layer.serialize(message))
    for pipeline in pipelines.values():
        pipeline.execute()


async def _layer_send(layer, sends: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in sends:
        await layer.group_send(group, message)


def group_send_many(sends: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Send each (group, message); log and carry on when the layer fails."""
    sends = [(group, metrics.publishing(group, message)) for group, message in sends]
    layer = get_channel_layer()
    if layer is None or not sends:
        return
    try:
        if isinstance(layer, RedisPubSubChannelLayer):
            _publish(layer, sends)
        else:
            async_to_sync(_layer_send)(layer, sends)
    except Exception:
        # Push is best effort: heartbeats and resync bring clients back to
        # the database state, so a broken layer must not fail the write.
        logger.exception("channel-layer publish to %s failed", ", ".join(sorted({group for group, _ in sends})))
        for group, _ in sends:
            metrics.publish_failed(group)


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send `message` to a channel-layer group (best effort)."""
    group_send_many([(group, message)])
