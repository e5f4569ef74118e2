"""WebSocket routes of all apps, behind the blocklist, the Origin check and session auth."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.urls import re_path

from access.middleware import BlocklistGate
from notifications.routing import websocket_urlpatterns as notification_routes
from tracking.routing import websocket_urlpatterns as tracking_routes
from xiaoxiang.sockets import NoRouteConsumer


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


class SessionAuthWhenCookie:
    """Channels' session auth stack, only for handshakes that carry a cookie.

    App clients (and every handshake without Origin) have no cookie: they
    authenticate with a first-message token, so the session lookup (a thread
    hop per connect) is skipped and they start anonymous.
    """

    def __init__(self, application) -> None:
        self.application = application
        self.with_session = AuthMiddlewareStack(application)

    async def __call__(self, scope, receive, send):
        if any(name == b"cookie" for name, _ in scope.get("headers", [])):
            return await self.with_session(scope, receive, send)
        return await self.application({**scope, "user": AnonymousUser()}, receive, send)


def websocket_application():
    return BlocklistGate(
        SameSiteOriginValidator(
            SessionAuthWhenCookie(
                URLRouter([*tracking_routes, *notification_routes, re_path(r"^", NoRouteConsumer.as_asgi())])
            ),
            settings.ALLOWED_HOSTS,
        )
    )
