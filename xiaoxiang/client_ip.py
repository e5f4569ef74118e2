"""The client's address: the peer, or the X-Real-IP of a trusted proxy; never a header a client can forge.

nginx (deploy/nginx/) sets X-Real-IP to the address it was called from, so
behind it the peer of gunicorn and Daphne is always nginx. Only a peer in
TRUSTED_PROXIES is believed; anyone else (a client reaching a backend
directly) is their own address, whatever headers they send. The entry
points apply the rule once (`wsgi_environ_apply` in xiaoxiang.wsgi,
`RealClientIP` in xiaoxiang.asgi), so everything after them (throttles,
the blocklist, login lockouts, the per-IP socket limit) reads REMOTE_ADDR
or scope["client"] and sees the same address.
"""

import functools
import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_parse(value: str | None) -> IPAddress | None:
    """An address, or None for anything that is not one (an IPv4-mapped IPv6 address counts as IPv4)."""
    try:
        address = ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.cache
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def ip_in_networks(address: IPAddress, entries: list[str] | tuple[str, ...]) -> bool:
    return any(address in network for network in _networks(tuple(entries)) if network.version == address.version)


def is_trusted_proxy(address: str | None) -> bool:
    parsed = ip_parse(address)
    return parsed is not None and ip_in_networks(parsed, settings.TRUSTED_PROXIES)


def client_ip(peer: str | None, real_ip: str | None) -> str | None:
    """The one rule: a trusted proxy's X-Real-IP when it names an address, else the peer."""
    if real_ip and is_trusted_proxy(peer):
        named = ip_parse(real_ip)
        if named is not None:
            return str(named)
    return peer


def wsgi_environ_apply(environ: dict[str, Any]) -> None:
    environ["REMOTE_ADDR"] = client_ip(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_REAL_IP"))


def request_client_ip(request: HttpRequest) -> str | None:
    """The client's address for a request (the entry points already applied the rule); axes' callable too."""
    return request.META.get("REMOTE_ADDR")


def scope_client_ip(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


class RealClientIP:
    """ASGI middleware: scope["client"] becomes the client's address (HTTP and WebSocket alike)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            real_ip = next(
                (value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-real-ip"), None
            )
            address = client_ip(peer[0] if peer else None, real_ip)
            if address is not None and (peer is None or address != peer[0]):
                scope = {**scope, "client": [address, peer[1] if peer else 0]}
        return await self.application(scope, receive, send)
