"""WebSocket routes of all apps, behind the Origin check and session auth."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings

from notifications.routing import websocket_urlpatterns as notification_routes
from tracking.routing import websocket_urlpatterns as tracking_routes


class SameSiteOriginValidator(OriginValidator):
    """Channels' AllowedHostsOriginValidator, except for handshakes without an Origin.

    Browsers always send Origin, so one naming another site is refused (a
    cross-site page must not ride the user's cookie). App clients send none:
    they are let in with their cookies removed, so only a first-message token
    can authenticate them.
    """

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        if scope["type"] == "websocket" and not any(name == b"origin" for name, _ in headers):
            scope = {**scope, "headers": [(name, value) for name, value in headers if name != b"cookie"]}
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)


def websocket_application():
    return SameSiteOriginValidator(
        AuthMiddlewareStack(URLRouter([*tracking_routes, *notification_routes])), settings.ALLOWED_HOSTS
    )
