"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
# Django must be set up before consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from xiaoxiang.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application(),
    }
)

# Without REDIS_URL there is no beat process: periodic jobs run on a timer here.
from xiaoxiang.celery import embedded_beat_start  # noqa: E402

embedded_beat_start()
