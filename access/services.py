"""Automatic temporary bans: a client answered 401 or 429 too often in a window is blocked for a while.

Strikes are counted in the cache: Redis when REDIS_URL is set (shared by
every process), this process's memory otherwise. Counting is best effort:
with Redis down nothing is counted (a warning is logged) and requests go
on. The ban itself is a BlockedNetwork row with reason "auto" and an
expiry, so staff see it in the admin and can lift it early.
"""

import datetime as dt
import logging
import time

import redis
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from access.models import AUTO_BAN_REASON, BlockedNetwork
from xiaoxiang.cache import shared_cache
from xiaoxiang.client_ip import ip_parse, is_trusted_proxy

logger = logging.getLogger(__name__)

# The answers that count as a strike: failed authentication and throttling.
STRIKE_STATUSES = frozenset({401, 429})


def strike_record(*, address: str | None) -> BlockedNetwork | None:
    """Count one strike against an address; the automatic ban when this strike reaches the threshold."""
    threshold = settings.ACCESS_AUTO_BAN_THRESHOLD
    parsed = ip_parse(address)
    # A trusted proxy is never banned: that would block every client behind it.
    if threshold <= 0 or parsed is None or is_trusted_proxy(address):
        return None
    window = settings.ACCESS_AUTO_BAN_WINDOW_SECONDS
    # Fixed windows: one counter per address and window, gone with the window.
    key = f"access.strikes:{parsed}:{int(time.time() // window)}"
    try:
        cache = shared_cache()
        cache.add(key, 0, timeout=window + 1)
        count = cache.incr(key)
    except (redis.RedisError, OSError, ValueError):
        # ValueError: the counter expired between add and incr (a window's last instant).
        logger.warning("access: strike for %s not counted (cache unavailable)", parsed, exc_info=True)
        return None
    # Exactly one request (the one whose incr reached the threshold) bans, in every process.
    if count != threshold:
        return None
    return blocked_network_ban_auto(address=str(parsed))


def blocked_network_ban_auto(*, address: str) -> BlockedNetwork | None:
    """Block one address for ACCESS_AUTO_BAN_SECONDS (None when the database is unavailable)."""
    expires_at = timezone.now() + dt.timedelta(seconds=settings.ACCESS_AUTO_BAN_SECONDS)
    try:
        ban = BlockedNetwork.objects.create(network=address, reason=AUTO_BAN_REASON, expires_at=expires_at)
    except DatabaseError:
        logger.warning("access: automatic ban of %s not recorded (database unavailable)", address, exc_info=True)
        return None
    logger.warning("access: %s banned until %s after too many 401/429 answers", address, expires_at.isoformat())
    return ban
