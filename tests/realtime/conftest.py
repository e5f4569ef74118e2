"""Helpers for socket tests: an async test body runs on one loop through async_to_sync."""

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from xiaoxiang import sockets
from xiaoxiang.routing import websocket_application

SAME_SITE = (b"origin", b"http://testserver")


@pytest.fixture(autouse=True)
def _fresh_realtime_state():
    # The in-memory layer's queues belong to the loop of the test that made them.
    channel_layers.backends = {}
    sockets.connection_slots._local.clear()
    yield
    channel_layers.backends = {}
    sockets.connection_slots._local.clear()


def run(body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def body_then_cleanup() -> Any:
        try:
            return await body()
        finally:
            # Finish any consumer task still running (a disconnect's slot
            # release, a cancelled heartbeat) while asgiref's executors still
            # serve it; left to asyncio.run's shutdown, a task waiting on the
            # main thread's executor can hang the test forever.
            current = asyncio.current_task()
            leftovers = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                await asyncio.wait(leftovers, timeout=10)

    return async_to_sync(body_then_cleanup)()


def access_token(user: User, lifetime: dt.timedelta | None = None) -> str:
    token = AccessToken.for_user(user)
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    return str(token)


def session_cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def socket(path: str, *, headers: list[tuple[bytes, bytes]] | None = None, client_ip: str = "10.0.0.1"):
    communicator = WebsocketCommunicator(websocket_application(), path, headers=headers or [])
    communicator.scope["client"] = [client_ip, 40000]
    return communicator


async def open_with_session(path: str, user: User, **kwargs) -> WebsocketCommunicator:
    from channels.db import database_sync_to_async

    cookie = await database_sync_to_async(session_cookie)(user)
    communicator = socket(path, headers=[SAME_SITE, (b"cookie", cookie)], **kwargs)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def open_with_token(path: str, user: User, *, lifetime: dt.timedelta | None = None, **kwargs):
    from channels.db import database_sync_to_async

    token = await database_sync_to_async(access_token)(user, lifetime)
    communicator = socket(path, **kwargs)  # an app client: no Origin, no cookie
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "auth", "token": token})
    return communicator


async def receive(communicator: WebsocketCommunicator, timeout: float = 3) -> dict[str, Any]:
    output = await communicator.receive_output(timeout)
    assert output["type"] == "websocket.send", output
    return json.loads(output["text"])


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 3) -> int:
    """The close code the server sent (skipping any frames before it); then lets the consumer finish."""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            # The client's side of the close: the consumer runs disconnect()
            # and ends, so no task of it outlives this test's event loop.
            await communicator.disconnect(code=output.get("code") or 1000, timeout=timeout)
            return output.get("code")


async def nothing_more(communicator: WebsocketCommunicator, timeout: float = 0.3) -> bool:
    return await communicator.receive_nothing(timeout)
