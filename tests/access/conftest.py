"""Abuse-control test helpers: clients calling from a given address, blocklist entries."""

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from access.blocklist import blocklist
from access.models import BlockedNetwork

ATTACKER = "203.0.113.7"
BYSTANDER = "198.51.100.20"


@pytest.fixture
def client_from() -> Callable[[str], APIClient]:
    """client_from(address) is an anonymous client whose requests come from that address."""

    def _client(address: str) -> APIClient:
        return APIClient(REMOTE_ADDR=address)

    return _client


def block(network: str, *, reason: str = "scraping", expires_in: dt.timedelta | None = None) -> BlockedNetwork:
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    entry = BlockedNetwork.objects.create(network=network, reason=reason, expires_at=expires_at)
    # A test's transaction never commits, so the after-commit refresh (access.signals) would not run.
    blocklist.invalidate()
    return entry
