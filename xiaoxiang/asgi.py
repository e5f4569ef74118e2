"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
# Django must be set up before consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from xiaoxiang.client_ip import RealClientIP  # noqa: E402
from xiaoxiang.routing import websocket_application  # noqa: E402

# RealClientIP first: everything below sees the client's address, not nginx's.
application = RealClientIP(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": websocket_application(),
        }
    )
)


def _allow_service_restart_close() -> None:
    """Let Daphne send close codes 1012 (service restart: xiaoxiang.sockets sends it on SIGTERM)
    and 1013 (try again later: sent while the database is unreachable).

    RFC 6455 lets a server close with 1012, but autobahn's sendClose admits
    only 1000 and 3000-4999 (codes for applications) and Daphne passes every
    ASGI close code through it, so the close would fail and the client see
    1006. Its sendCloseFrame, which sendClose calls after that check, sends
    any code.
    """
    from daphne.ws_protocol import WebSocketProtocol

    server_close = WebSocketProtocol.serverClose

    def serverClose(self, code=None):
        if code in (1012, 1013):
            self.sendCloseFrame(code=code, isReply=False)
        else:
            server_close(self, code)

    WebSocketProtocol.serverClose = serverClose


_allow_service_restart_close()

# Without REDIS_URL there is no beat process: periodic jobs run on a timer here.
from xiaoxiang.celery import embedded_beat_start  # noqa: E402

embedded_beat_start()
