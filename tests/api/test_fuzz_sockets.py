"""Property-based fuzz of every socket frame type the consumers accept, and of socket paths.

Each example opens a socket (/ws/orders/{id}/, /ws/notifications/, /ws/ops/,
authenticated or not), sends one hostile frame made from a valid one (auth,
resync, an unknown type) and then a probe of an unknown type. The socket
answers the probe with an error frame or has closed with a documented code
(4401, 4403, 4404, 4429); it never raises (which Daphne turns into 1011) and
no row changes. The HTTP side is test_fuzz_http.py.
"""

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets
from channels.layers import channel_layers
from hypothesis import given
from hypothesis import strategies as st

from tests.api.fuzzing import FUZZ_SETTINGS, data_snapshot, hostile_json, hostile_text, production_recursion_limit
from tests.conftest import PASSWORD
from tests.realtime.conftest import access_token, run, socket
from xiaoxiang import sockets
from xiaoxiang.payloads import TEXT_ERROR

pytestmark = pytest.mark.django_db(transaction=True)

DOCUMENTED_CLOSE_CODES = {1000, 4401, 4403, 4404, 4429}
PROBE = {"type": "probe"}
SENT = {"frames": 0, "1011": 0}


@pytest.fixture(autouse=True, scope="module")
def _report_count():
    yield
    print(f"\nSocket fuzz: {SENT['frames']} frames, {SENT['1011']} closed 1011")  # shown with -s


@pytest.fixture
def streams(make_order, customer, staff) -> dict[str, tuple[str, Any]]:
    """Each socket path with the user who may open it."""
    order = make_order("delivering")
    return {
        "order": (f"/ws/orders/{order.id}/", customer),
        "notifications": ("/ws/notifications/", customer),
        "ops": ("/ws/ops/", staff),
    }


def _frame_templates(token: str) -> list[dict[str, Any]]:
    return [
        {"type": "auth", "token": token},
        {"type": "resync", "since_version": 3},
        {"type": "heartbeat", "version": 1},
    ]


async def _exchange(path: str, token: str | None, frame: bytes) -> int | None:
    """Open `path` (authenticated when `token`), send `frame` then the probe; the close code, or None if open."""
    ws = socket(path)
    connected, _ = await ws.connect()
    assert connected
    try:
        if token is not None:
            await ws.send_json_to({"type": "auth", "token": token})
            first = await ws.receive_output(5)
            if first["type"] == "websocket.close":
                return first.get("code")
        try:
            await ws.send_input({"type": "websocket.receive", "text": frame.decode()})
        except UnicodeDecodeError:  # not UTF-8: it can only travel as a binary frame
            await ws.send_input({"type": "websocket.receive", "bytes": frame})
        SENT["frames"] += 1
        await ws.send_json_to(PROBE)
        while True:
            # A consumer that raised re-raises here: the in-process view of Daphne's 1011.
            output = await ws.receive_output(5)
            if output["type"] == "websocket.close":
                return output.get("code")
            if "probe" in json.loads(output.get("text") or "{}").get("detail", ""):
                return None
    finally:
        await ws.disconnect()


def _fresh_socket_state() -> None:
    # Each example runs on its own event loop; layers and local slots belong to the previous one.
    channel_layers.backends = {}
    sockets.connection_slots._local.clear()


@FUZZ_SETTINGS
@given(data=st.data())
def test_hostile_frames_get_an_error_frame_or_a_documented_close_never_1011(streams, data):
    stream = data.draw(st.sampled_from(sorted(streams)), label="stream")
    path, user = streams[stream]
    token = access_token(user)
    frame = data.draw(st.one_of(*(hostile_json(template) for template in _frame_templates(token))), label="frame")
    before = data_snapshot()

    # The same frame on an authenticated socket, then as the first frame of an anonymous one.
    codes = []
    for first_token in (token, None):
        _fresh_socket_state()
        with production_recursion_limit():
            codes.append(run(lambda first_token=first_token: _exchange(path, first_token, frame)))

    SENT["1011"] += codes.count(1011)
    assert all(code is None or code in DOCUMENTED_CLOSE_CODES for code in codes), codes
    # Anything but a valid auth frame first is 4401 (an oversized frame 4429).
    assert codes[1] in {None, 4401, 4429}, codes
    assert data_snapshot() == before


def _routed(path: str) -> bool:
    return bool(re.fullmatch(r"/ws/(orders/[0-9a-f]{32}/|ops/|notifications/)", path))


malformed_paths = st.one_of(
    st.one_of(hostile_text, st.text(alphabet="0123456789abcdefABCDEF", min_size=31, max_size=33)).map(
        lambda text: f"/ws/orders/{text}/"
    ),
    st.sampled_from(["/ws/orders/", "/ws/orders//", "/ws/orders/a/b/", "/ws/", "/ws/nothing/", "/", "/ws/ops/x/"]),
    hostile_text.map(lambda text: f"/ws/{text}"),
).filter(lambda path: not _routed(path))


@FUZZ_SETTINGS
@given(path=malformed_paths)
def test_a_socket_path_no_route_names_closes_4404_without_a_query(customer, path, django_assert_num_queries):
    # A path with a malformed order id (or none) reaches no consumer that reads: zero queries, 4404 at once.
    _fresh_socket_state()

    async def opened_and_closed() -> int:
        ws = socket(path)
        connected, _ = await ws.connect()
        output = await ws.receive_output(5)
        await ws.disconnect()
        return output.get("code") if connected else None

    with django_assert_num_queries(0):
        code = run(opened_and_closed)
    SENT["frames"] += 1
    assert code == 4404


# --- The campaign's socket finding, on the real Daphne -------------------------------


@pytest.mark.redis
@pytest.mark.postgres
def test_a_1500_deep_frame_gets_an_error_frame_on_daphne_not_1011(daphne_server, make_order, customer):
    order = make_order("delivering")
    token = httpx.post(f"{daphne_server.url}/api/auth/token/", json={"username": "alice", "password": PASSWORD}).json()[
        "access"
    ]

    async def scenario() -> list[dict]:
        async with websockets.connect(f"{daphne_server.ws_url}/ws/orders/{order.id}/") as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
            await ws.send("[" * 1500 + "]" * 1500)
            await ws.send(json.dumps({"type": "resync", "since_version": "\ud800"}))
            await ws.send(json.dumps({"type": "resync", "since_version": 6}))  # still open: answered
            return [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(3)]

    deep, surrogate, answer = asyncio.run(scenario())

    assert deep == {"type": "error", "detail": "JSON nested deeper than 32 levels."}
    assert surrogate == {"type": "error", "detail": TEXT_ERROR}
    assert answer["type"] == "heartbeat"
    assert answer["version"] == 6


@pytest.mark.redis
@pytest.mark.postgres
def test_a_malformed_order_id_closes_4404_on_daphne(daphne_server):
    async def scenario() -> int:
        async with websockets.connect(f"{daphne_server.ws_url}/ws/orders/{quote(chr(0))}/") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            return closed.value.rcvd.code

    assert asyncio.run(scenario()) == 4404
