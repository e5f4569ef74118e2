"""The cache and every Redis client of the project: short timeouts, one retry, and failing open.

Redis is not the truth (PostgreSQL is): when it is unreachable the cache
answers "nothing cached" and drops writes, so throttles let requests through,
snapshots are built from the database and the writes still commit. Each
failure is logged (at most once per use every few seconds) and counted in
`xiaoxiang_redis_unavailable_total`; `redis_failed_within` tells readers of
cached hints that those may have missed writes made while Redis was away.

Django's RedisCacheClient builds a new `redis.Redis` for every cache call;
its constructor fills a case-insensitive table of ~200 response callbacks,
which cost more CPU than the round trip itself on the GPS ingest path (about
seven cache calls per request). A client is thread-safe (it takes a
connection from its pool per command), so one per pool is enough.
"""

import functools
import logging
import threading
import time
from typing import Any

import redis
from django.core.cache import BaseCache, caches
from django.core.cache.backends import redis as django_redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from xiaoxiang import metrics

logger = logging.getLogger(__name__)

# redis-py's default retries a refused connection ten times with backoff (seconds per
# call while Redis is down). One immediate retry is enough to replace a pooled
# connection that went stale while Redis restarted; beyond that, fail fast.
REDIS_CLIENT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 1.0,
    "socket_timeout": 2.0,
    "retry": Retry(NoBackoff(), 1),
}
# What "Redis is unreachable" raises (a command refused by a healthy Redis is a bug, not an outage).
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)

_WARN_EVERY_SECONDS = 10.0
_last_failure: float | None = None
_last_warning: dict[str, float] = {}


def redis_unavailable(use: str, error: BaseException) -> None:
    """Record that `use` (cache, publish, slots, layer) went on without Redis."""
    global _last_failure
    now = time.monotonic()
    _last_failure = now
    metrics.redis_unavailable(use)
    if now - _last_warning.get(use, -_WARN_EVERY_SECONDS) >= _WARN_EVERY_SECONDS:
        _last_warning[use] = now
        logger.warning("Redis unavailable (%s), going on without it: %s", use, error)


def redis_failed_within(seconds: float) -> bool:
    """Whether this process found Redis unreachable in the last `seconds`."""
    return _last_failure is not None and time.monotonic() - _last_failure < seconds


def _fail_open(nothing: Any):
    def decorate(method):
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except REDIS_DOWN as error:
                redis_unavailable("cache", error)
                return nothing

        return wrapper

    return decorate


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, servers: Any, **options: Any) -> None:
        super().__init__(servers, **{**REDIS_CLIENT_OPTIONS, **options})
        self._clients: dict[int, Any] = {}

    def get_client(self, key: str | None = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client

    # Reads find nothing and writes are dropped while Redis is away (see the module docstring).
    add = _fail_open(False)(django_redis.RedisCacheClient.add)
    set = _fail_open(None)(django_redis.RedisCacheClient.set)
    touch = _fail_open(False)(django_redis.RedisCacheClient.touch)
    delete = _fail_open(False)(django_redis.RedisCacheClient.delete)
    get_many = _fail_open({})(django_redis.RedisCacheClient.get_many)
    has_key = _fail_open(False)(django_redis.RedisCacheClient.has_key)
    set_many = _fail_open(None)(django_redis.RedisCacheClient.set_many)
    delete_many = _fail_open(None)(django_redis.RedisCacheClient.delete_many)

    def get(self, key: str, default: Any) -> Any:
        try:
            return super().get(key, default)
        except REDIS_DOWN as error:
            redis_unavailable("cache", error)
            return default


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient


# django.core.cache.cache is local to each async context, so in a daphne
# process every socket would get its own cache object and open its own Redis
# connection pool. Code that also runs in consumers uses one per process.
_shared: BaseCache | None = None
_lock = threading.Lock()


def shared_cache() -> BaseCache:
    global _shared
    with _lock:
        if _shared is None:
            _shared = caches.create_connection("default")
        return _shared
