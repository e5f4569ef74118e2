"""Best-effort sends to the Channels layer, for every app's live updates.

With Redis (channels-redis's RedisPubSubChannelLayer) a send is a Redis
PUBLISH on the channel the layer's subscribers listen to, in the layer's own
message format, made with a plain per-process Redis client: no event loop
and thread hop per call, and all of a commit's sends in one round trip.
Each daphne process subscribes once per group and fans a message out to its
own sockets. Other layers (the in-memory one of the embedded default) go
through the layer's API.

A send can carry claims: keys set only if absent, with a lifetime (a
debounce window). With Redis they ride in the same pipeline as the
publishes, so a request's after-commit side effects are one round trip.
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
from xiaoxiang.cache import REDIS_CLIENT_OPTIONS, REDIS_DOWN, redis_unavailable, shared_cache

logger = logging.getLogger(__name__)

_clients: dict[int, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(host: dict[str, Any], index: int) -> redis.Redis:
    with _clients_lock:
        client = _clients.get(index)
        if client is None:
            options = {key: value for key, value in host.items() if key not in ("address", "master_name")}
            client = redis.Redis.from_url(host["address"], **{**REDIS_CLIENT_OPTIONS, **options})
            _clients[index] = client
        return client


def _publish(
    layer: RedisPubSubChannelLayer, sends: list[tuple[str, dict[str, Any]]], claims: list[tuple[str, int]]
) -> set[str]:
    hosts = decode_hosts(layer._kwargs.get("hosts"))
    prefix = layer._kwargs.get("prefix", "asgi")
    pipelines: dict[int, redis.client.Pipeline] = {}

    def pipeline(index: int) -> redis.client.Pipeline:
        if index not in pipelines:
            pipelines[index] = _client(hosts[index], index).pipeline(transaction=False)
        return pipelines[index]

    for group, message in sends:
        # The names RedisPubSubLoopLayer.group_send uses: a group's Redis
        # channel, sharded over the hosts by the same consistent hash.
        channel = f"{prefix}__group__{group}"
        pipeline(_consistent_hash(channel, len(hosts))).publish(channel, layer.serialize(message))
    claim_keys = [f"{prefix}__claim__{key}" for key, _ in claims]
    for (_, seconds), name in zip(claims, claim_keys, strict=True):
        pipeline(0).set(name, 1, nx=True, ex=seconds)
    results = {index: pipe.execute() for index, pipe in pipelines.items()}
    # The claims were queued last on host 0, so they are the tail of its results.
    outcomes = results[0][-len(claims) :] if claims else []
    return {key for (key, _), won in zip(claims, outcomes, strict=True) if won}


async def _layer_send(layer, sends: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in sends:
        await layer.group_send(group, message)


def group_send_many(sends: Iterable[tuple[str, dict[str, Any]]], *, claims: Iterable[tuple[str, int]] = ()) -> set[str]:
    """Send each (group, message) and take each claim (key, seconds); the claims won.

    Logs and carries on when the layer fails (then no claim is won).
    """
    sends = [(group, metrics.publishing(group, message)) for group, message in sends]
    claims = list(claims)
    layer = get_channel_layer()
    if not sends and not claims:
        return set()
    try:
        if isinstance(layer, RedisPubSubChannelLayer):
            return _publish(layer, sends, claims)
        if layer is not None and sends:
            async_to_sync(_layer_send)(layer, sends)
        return {key for key, seconds in claims if shared_cache().add(f"push.claim:{key}", 1, timeout=seconds)}
    except Exception as error:
        # Push is best effort: the sockets' catch-up, heartbeats and resync
        # bring clients back to the database state, so a broken layer must
        # not fail the write.
        if isinstance(error, REDIS_DOWN):
            redis_unavailable("publish", error)
        else:
            logger.exception("channel-layer publish to %s failed", ", ".join(sorted({group for group, _ in sends})))
        for group, _ in sends:
            metrics.publish_failed(group)
        return set()


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send `message` to a channel-layer group (best effort)."""
    group_send_many([(group, message)])
