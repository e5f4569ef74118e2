"""GET /api/orders/{id}/events/ and GET /api/orders/{id}/poll/ (DESIGN.md section 4).

`events/` is an ordinary DRF view. `poll/` is an async Django view: it joins
the order's channel-layer group with a fresh channel, checks the database
once, closes its connection and then awaits the publish path's message, so
a waiting poll holds neither a database connection nor a worker thread.
OrderPollApi only describes it to drf-spectacular and authenticates it with
DRF's own authenticators.
"""

import asyncio
import contextlib
import math
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from orders.selectors import order_get_for_user, viewer_role
from tracking.publish import order_group
from tracking.role_views import event_for_role, role_view
from tracking.snapshot import order_version_hint
from tracking.stream import order_events_page
from xiaoxiang.errors import NotFound


class EventsQuerySerializer(serializers.Serializer):
    since_version = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, required=False)

    def validate_limit(self, value: int) -> int:
        ceiling = settings.EVENTS_PAGE_MAX
        if value > ceiling:
            raise serializers.ValidationError(f"Ensure this value is less than or equal to {ceiling}.")
        return value


class PollQuerySerializer(EventsQuerySerializer):
    timeout = serializers.FloatField(required=False)

    def validate_timeout(self, value: float) -> float:
        ceiling = settings.POLL_MAX_TIMEOUT_SECONDS
        if not math.isfinite(value) or value < 0 or value > ceiling:
            raise serializers.ValidationError(f"Must be a number of seconds from 0 to {ceiling:g}.")
        return value


class StreamEventSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.IntegerField()
    stage = serializers.CharField(allow_null=True)
    lat = serializers.FloatField(allow_null=True)
    lon = serializers.FloatField(allow_null=True)
    recorded_at = serializers.DateTimeField()
    version = serializers.IntegerField()
    operator_type = serializers.IntegerField(allow_null=True)
    data = serializers.DictField()
    quality_flags = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=(
            "Staff only: why a location event is not trusted as a position (`accuracy`, `zero`, `speed`; "
            "tracking/quality.py), [] when it is. Others get a flagged point with lat and lon null."
        ),
    )


class StreamPageSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The order's current version (or the newest returned event's).")
    events = StreamEventSerializer(many=True)
    has_more = serializers.BooleanField(help_text="More events follow: ask again from the last version.")


_SINCE = OpenApiParameter("since_version", int, description="Return events with a version greater than this.")
_LIMIT = OpenApiParameter("limit", int, description="Page size (default 100, at most 500).")
_ERRORS = {
    400: OpenApiResponse(description="Invalid query parameters"),
    401: OpenApiResponse(description="Not authenticated"),
    404: OpenApiResponse(description="No such order, or not visible to the caller"),
}


def _page_size(params: dict[str, Any]) -> int:
    return params.get("limit") or settings.EVENTS_PAGE_SIZE


class OrderEventsApi(APIView):
    @extend_schema(
        summary="An order's events after a version, ascending (bounded page)",
        tags=["tracking"],
        parameters=[_SINCE, _LIMIT],
        responses={200: StreamPageSerializer, **_ERRORS},
    )
    def get(self, request: Request, order_id: str) -> Response:
        params = EventsQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        order = order_get_for_user(user=request.user, order_id=order_id)
        page = order_events_page(
            order=order,
            role=viewer_role(user=request.user, order=order),
            since_version=params.validated_data["since_version"],
            limit=_page_size(params.validated_data),
        )
        return Response(page)


class OrderPollApi(APIView):
    """Long-poll fallback, served by `order_poll_view`; this class carries its schema, authenticators and throttle."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "poll"

    @extend_schema(
        summary="Long-poll: returns as soon as an event newer than since_version exists",
        description="Waits at most `timeout` seconds (default 25, at most 30) and then answers with no events.",
        tags=["tracking"],
        parameters=[_SINCE, _LIMIT, OpenApiParameter("timeout", float, description="Seconds to wait, 0 to 30.")],
        responses={200: StreamPageSerializer, **_ERRORS},
    )
    def get(self, request: Request, order_id: str) -> Response:  # pragma: no cover - order_poll_view serves it
        raise exceptions.MethodNotAllowed("GET")


def _error(exc: exceptions.APIException) -> JsonResponse:
    data = exc.detail
    body = {"detail": "Invalid input.", **data} if isinstance(data, dict) else {"detail": str(data)}
    response = JsonResponse(body, status=exc.status_code, json_dumps_params={"ensure_ascii": False})
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(math.ceil(exc.wait))
    return response


def _throttle_check(drf_request: Request) -> None:
    """DRF's throttle check, as APIView.check_throttles runs it (scope "poll", per user)."""
    view = OrderPollApi()
    for throttle in view.get_throttles():
        if not throttle.allow_request(drf_request, view):
            raise exceptions.Throttled(wait=throttle.wait())


def _poll_check(
    request: HttpRequest, order_id: str, since_version: int, limit: int, *, first: bool = False
) -> tuple[str, dict[str, Any]]:
    """Authenticate like DRF, check visibility and read newer events once; then give the connection back.

    `first`: the poll's first check, which also counts it against the throttle.
    """
    try:
        drf_request = Request(request, authenticators=[auth() for auth in OrderPollApi.authentication_classes])
        if not drf_request.user or not drf_request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        if first:
            _throttle_check(drf_request)
        order = order_get_for_user(user=drf_request.user, order_id=order_id)
        role = viewer_role(user=drf_request.user, order=order)
        # Poll events carry `changes` like socket events, so clients apply one rule to both.
        page = order_events_page(order=order, role=role, since_version=since_version, limit=limit, with_changes=True)
        return role, page
    finally:
        # The wait that follows must not pin a database connection.
        if not connection.in_atomic_block:
            connection.close()


async def order_poll_view(request: HttpRequest, order_id: str) -> JsonResponse:
    if request.method != "GET":
        return _error(exceptions.MethodNotAllowed(request.method))
    params = PollQuerySerializer(data=request.GET)
    if not params.is_valid():
        return _error(exceptions.ValidationError(params.errors))
    since_version = params.validated_data["since_version"]
    limit = _page_size(params.validated_data)
    timeout = params.validated_data.get("timeout", settings.POLL_DEFAULT_TIMEOUT_SECONDS)

    layer = get_channel_layer()
    channel = await layer.new_channel("poll.")
    group = order_group(order_id)
    # Join before the database check: an event committed in between still wakes us.
    await layer.group_add(group, channel)
    receiving: asyncio.Future | None = None
    try:
        try:
            role, page = await sync_to_async(_poll_check)(request, order_id, since_version, limit, first=True)
        except NotFound as error:
            return JsonResponse(error.as_dict(), status=404)
        except exceptions.APIException as error:
            return _error(error)
        if page["events"]:
            return JsonResponse(page)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        recheck = settings.POLL_RECHECK_SECONDS
        # One receive for the whole wait: cancelling a receive makes the
        # pub/sub layer drop the channel (and anything arriving meanwhile).
        receiving = asyncio.ensure_future(layer.receive(channel))
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.wait({receiving}, timeout=min(remaining, recheck))
            if not receiving.done():
                # Safety net, not a polling loop: a publish made while the
                # layer's subscriber reconnected is missed. The publish path
                # records the newest version in the cache, so a glance there
                # (no database) catches what the layer did not deliver.
                hint = await database_sync_to_async(order_version_hint, thread_sensitive=False)(order_id=order_id)
                if hint is None or hint <= since_version:
                    continue
                _, page = await sync_to_async(_poll_check)(request, order_id, since_version, limit)
                if page["events"]:
                    return JsonResponse(page)
                continue
            message = receiving.result()
            receiving = asyncio.ensure_future(layer.receive(channel))
            if message.get("type") != "order.events":
                continue
            view = role_view(role)
            newer = [
                {**event_for_role(payload, role), "changes": changes[view]}
                for payload, changes in zip(message["events"], message["changes"], strict=True)
                if payload["version"] > since_version
            ]
            if not newer:
                continue
            if newer[0]["version"] == since_version + 1 and len(newer) <= limit:
                return JsonResponse({"version": newer[-1]["version"], "events": newer, "has_more": False})
            # A gap (a missed message) or a long batch: the database has it all.
            _, page = await sync_to_async(_poll_check)(request, order_id, since_version, limit)
            return JsonResponse(page)
        return JsonResponse({"version": page["version"], "events": [], "has_more": False})
    finally:
        if receiving is not None:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
        await layer.group_discard(group, channel)


# drf-spectacular lists views by their `cls`; the async function keeps the request path.
order_poll_view.cls = OrderPollApi
order_poll_view.initkwargs = {}
