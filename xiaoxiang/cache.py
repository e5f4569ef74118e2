"""The cache: Django's Redis cache with one Redis client per connection pool, and one cache object per process.

Django's RedisCacheClient builds a new `redis.Redis` for every cache call;
its constructor fills a case-insensitive table of ~200 response callbacks,
which cost more CPU than the round trip itself on the GPS ingest path (about
seven cache calls per request). A client is thread-safe (it takes a
connection from its pool per command), so one per pool is enough.
"""

import threading
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: str | None = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


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
