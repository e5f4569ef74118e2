"""Probes and the scrape endpoint: /healthz, /readyz, /metrics (DESIGN.md section 9).

OpsEndpointsMiddleware answers them ahead of the rest of the chain: probes
and scrapers call a pod by its address, over plain HTTP, which the host
check and the HTTPS redirect below it would refuse.

All three are unauthenticated for the load balancer and the scraper, so
they answer with a bare word and never say which dependency failed (the
process log does).
"""

import asyncio
import logging
import uuid

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse

from xiaoxiang import metrics
from xiaoxiang.middleware import SyncAndAsyncMiddleware

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
# Once every migration is applied it stays applied for this process's code,
# so the (graph-loading) check runs until it first passes, not on every probe.
_migrations_applied = False


def _plain(text: str, status: int) -> HttpResponse:
    response = HttpResponse(f"{text}\n", status=status, content_type="text/plain")
    response["Cache-Control"] = "no-store"
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and serving; nothing else is checked."""
    return _plain("ok", 200)


def _database_ready() -> bool:
    global _migrations_applied
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    if not _migrations_applied:
        executor = MigrationExecutor(connection)
        _migrations_applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrations_applied


def _cache_ready() -> bool:
    # With REDIS_URL the cache is Redis: a write and a read prove it answers.
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, 1, timeout=5)
    found = cache.get(key) == 1
    cache.delete(key)
    return found


async def _channel_layer_ready() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    channel = await layer.new_channel("readyz.")
    await layer.send(channel, {"type": "readyz.check"})
    return (await layer.receive(channel)).get("type") == "readyz.check"


async def _check(name: str, probe) -> bool:
    try:
        return bool(await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS))
    except Exception:
        # Whatever broke, the answer is "not ready"; the reason goes to the log only.
        logger.warning("readiness check %s failed", name, exc_info=True)
        return False


async def readyz(request: HttpRequest) -> HttpResponse:
    """Ready for traffic: the database answers with every migration applied, Redis and the channel layer answer."""
    checks = {
        "database": sync_to_async(_database_ready),
        "cache": sync_to_async(_cache_ready, thread_sensitive=False),
        "channel_layer": _channel_layer_ready,
    }
    results = [await _check(name, probe) for name, probe in checks.items()]
    return _plain("ready", 200) if all(results) else _plain("not ready", 503)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of this process, for the bearer of METRICS_TOKEN only; 404 when no token is set."""
    allowed = metrics.scrape_allowed(request.headers.get("Authorization"))
    if allowed is None:
        return _plain("Not found.", 404)
    if not allowed:
        return _plain("Forbidden.", 403)
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


class OpsEndpointsMiddleware(SyncAndAsyncMiddleware):
    """/healthz, /readyz and /metrics, before host validation and the HTTPS redirect."""

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        if request.path == "/healthz":
            return healthz(request)
        if request.path == "/readyz":
            return async_to_sync(readyz)(request)
        if request.path == "/metrics":
            return metrics_view(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest):
        if request.path == "/healthz":
            return healthz(request)
        if request.path == "/readyz":
            return await readyz(request)
        if request.path == "/metrics":
            # Domain collectors read the database: not on the event loop.
            return await sync_to_async(metrics_view)(request)
        return await self.get_response(request)
