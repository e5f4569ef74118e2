"""The default cache as one client per process, for code that also runs in WebSocket consumers.

django.core.cache.cache is local to each async context, so in a daphne
process every socket would get its own cache client and open its own Redis
connection pool. Redis clients are thread-safe; one per process serves all.
"""

import threading

from django.core.cache import BaseCache, caches

_shared: BaseCache | None = None
_lock = threading.Lock()


def shared_cache() -> BaseCache:
    global _shared
    with _lock:
        if _shared is None:
            _shared = caches.create_connection("default")
        return _shared
