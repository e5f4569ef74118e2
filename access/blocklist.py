"""The per-process copy of the blocklist: what the HTTP middleware and the WebSocket gate check.

No database query per request: each process keeps the active entries in
memory and reloads them every ACCESS_BLOCKLIST_REFRESH_SECONDS, or at once
after a save or delete in this process (access.signals). Expiry is checked
against the clock on every lookup, so an expired entry stops applying the
moment it expires, not at the next reload. When the database cannot be
read the last copy keeps applying (fail open for what was never loaded).
"""

import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from access.models import BlockedNetwork
from xiaoxiang.client_ip import IPAddress, IPNetwork, ip_parse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Block:
    network: IPNetwork
    expires_at: float | None  # epoch seconds; None: until removed

    def active(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class _Entries:
    # Single addresses (most entries, every automatic ban) by address; ranges scanned.
    addresses: dict[IPAddress, Block]
    ranges: tuple[Block, ...]


class Blocklist:
    def __init__(self) -> None:
        self.entries = _Entries({}, ())
        self.loaded_at = -math.inf  # time.monotonic() of the last load
        self._lock = threading.Lock()

    def due(self) -> bool:
        return time.monotonic() - self.loaded_at >= settings.ACCESS_BLOCKLIST_REFRESH_SECONDS

    def invalidate(self) -> None:
        self.loaded_at = -math.inf

    def load(self) -> None:
        """Read the active entries (one query); keep the last copy when the database fails."""
        with self._lock:
            if not self.due():  # another thread just loaded it
                return
            try:
                rows = list(
                    BlockedNetwork.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
                    .order_by()
                    .values_list("network", "expires_at")
                )
            except DatabaseError:
                logger.warning("blocklist: the database did not answer; the last copy applies", exc_info=True)
                self.loaded_at = time.monotonic()
                return
            addresses: dict[IPAddress, Block] = {}
            ranges: list[Block] = []
            for network, expires_at in rows:
                block = Block(_network(network), expires_at.timestamp() if expires_at else None)
                if block.network.num_addresses == 1:
                    kept = addresses.get(block.network.network_address)
                    if kept is None or _outlasts(block, kept):
                        addresses[block.network.network_address] = block
                else:
                    ranges.append(block)
            self.entries = _Entries(addresses, tuple(ranges))
            self.loaded_at = time.monotonic()

    def match(self, address: str | None) -> Block | None:
        """The active entry that blocks this address, if any (the copy as it is: call load() when due())."""
        parsed = ip_parse(address)
        if parsed is None:
            return None
        now = time.time()
        entries = self.entries
        block = entries.addresses.get(parsed)
        if block is not None and block.active(now):
            return block
        for block in entries.ranges:
            if block.network.version == parsed.version and parsed in block.network and block.active(now):
                return block
        return None


def _network(value: str) -> IPNetwork:
    return ipaddress.ip_network(value, strict=False)


def _outlasts(block: Block, other: Block) -> bool:
    if block.expires_at is None:
        return True
    return other.expires_at is not None and block.expires_at > other.expires_at


blocklist = Blocklist()
