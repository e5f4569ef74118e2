"""The blocklist at the door: a Django middleware for HTTP, an ASGI gate for WebSocket handshakes.

Both read the per-process copy (access.blocklist), so a request costs a
dict lookup. The HTTP middleware also counts the 401 and 429 answers that
lead to automatic bans (access.services).
"""

import math
import time

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.http import HttpRequest, HttpResponse, JsonResponse

from access.blocklist import Block, blocklist
from access.services import STRIKE_STATUSES, strike_record
from xiaoxiang.client_ip import request_client_ip, scope_client_ip
from xiaoxiang.middleware import SyncAndAsyncMiddleware

BLOCKED_DETAIL = "Requests from your address are blocked."


def blocked_response(request: HttpRequest, block: Block) -> HttpResponse:
    """403: JSON `detail` under /api/ (clients parse it), a plain page elsewhere; Retry-After for a temporary ban."""
    detail = BLOCKED_DETAIL if block.expires_at is None else f"{BLOCKED_DETAIL[:-1]} for a while; try again later."
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": detail}, status=403)
    else:
        response = HttpResponse(f"403 Forbidden\n\n{detail}\n", status=403, content_type="text/plain; charset=utf-8")
    if block.expires_at is not None:
        response["Retry-After"] = str(max(1, math.ceil(block.expires_at - time.time())))
    return response


async def _match_async(address: str | None) -> Block | None:
    # On the thread pool, closing stale connections around the read (channels' wrapper).
    if blocklist.due():
        await database_sync_to_async(blocklist.load, thread_sensitive=False)()
    return blocklist.match(address)


def _match(address: str | None) -> Block | None:
    if blocklist.due():
        blocklist.load()
    return blocklist.match(address)


class BlocklistMiddleware(SyncAndAsyncMiddleware):
    """Refuses blocked clients before anything else runs; counts strikes on the way out."""

    def __call__(self, request: HttpRequest):
        if self.async_mode:
            return self.__acall__(request)
        address = request_client_ip(request)
        block = _match(address)
        if block is not None:
            return blocked_response(request, block)
        response = self.get_response(request)
        if response.status_code in STRIKE_STATUSES:
            strike_record(address=address)
        return response

    async def __acall__(self, request: HttpRequest):
        address = request_client_ip(request)
        block = await _match_async(address)
        if block is not None:
            return blocked_response(request, block)
        response = await self.get_response(request)
        if response.status_code in STRIKE_STATUSES:
            await database_sync_to_async(strike_record, thread_sensitive=False)(address=address)
        return response


class BlocklistGate:
    """ASGI: a WebSocket handshake from a blocked client is refused (HTTP 403), like a cross-site Origin."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and await _match_async(scope_client_ip(scope)) is not None:
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
