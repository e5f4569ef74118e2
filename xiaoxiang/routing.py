"""WebSocket routes of all apps, behind session auth and the Origin check."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter

from notifications.routing import websocket_urlpatterns as notification_routes
from tracking.routing import websocket_urlpatterns as tracking_routes


def websocket_application():
    return AuthMiddlewareStack(URLRouter([*tracking_routes, *notification_routes]))
