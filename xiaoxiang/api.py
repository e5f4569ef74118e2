"""API-wide plumbing: every error is JSON {"detail": ..., field errors...}, role
permissions, strict numbers, and the error responses every operation documents."""

import math
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from xiaoxiang.errors import DomainError
from xiaoxiang.roles import ALL_ROLES, user_role


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):  # raised by Django as DRF reads request.body
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"detail": f"Request body larger than {limit} bytes."}, status=413)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, list):
        response.data = {"detail": " ".join(str(item) for item in data), "errors": data}
    elif isinstance(data, dict) and "detail" not in data:
        response.data = {
            "detail": "Invalid input." if response.status_code == status.HTTP_400_BAD_REQUEST else str(exc),
            **data,
        }
    return response


class HasRole(BasePermission):
    """403 unless the caller acts in one of the view's `allowed_roles` (a tuple, or a dict by HTTP method).

    Anonymous callers fail too, and DRF turns that into 401.
    """

    message = "Your role may not use this endpoint."

    def has_permission(self, request: Request, view: APIView) -> bool:
        allowed = view.allowed_roles
        if isinstance(allowed, dict):
            allowed = allowed.get(request.method, ())
        return user_role(request.user) in allowed


class JsonApiView(APIView):
    # JSON bodies only (DEFAULT_PARSER_CLASSES: xiaoxiang.payloads), so the
    # schema documents exactly what is accepted; order ids are checked by the
    # URL converter. (A comment, not a docstring: the schema would show it on
    # every operation.)
    permission_classes = [HasRole]
    allowed_roles: tuple[str, ...] | dict[str, tuple[str, ...]] = ALL_ROLES


class StrictFloatField(serializers.FloatField):
    """A JSON number only: booleans and strings are refused, and so are NaN and ±Infinity."""

    default_error_messages = {
        "invalid": "A number is required.",
        "not_finite": "Must be a finite number.",
    }

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        try:
            value = float(data)
        except OverflowError:  # an integer too large for a float
            self.fail("not_finite")
        if not math.isfinite(value):
            self.fail("not_finite")
        return value


class ErrorSerializer(serializers.Serializer):
    """Every error: a message, plus a list of messages per invalid field."""

    detail = serializers.CharField()


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    version = serializers.IntegerField(help_text="The order's current version.")


_ERROR_DESCRIPTIONS = {
    400: "Invalid input: `detail` plus a list of messages per invalid field.",
    401: "Not authenticated, or the token is invalid, expired or of a deactivated user.",
    403: "The caller's role may not use this endpoint.",
    404: "No such object, or the caller may not see it.",
    429: "Too many requests; see the Retry-After header.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for the given error codes (409 carries the order's current version)."""
    responses = {}
    for code in codes:
        if code == 409:
            responses[409] = OpenApiResponse(
                ConflictSerializer, description="Illegal transition or stale expected_version."
            )
        else:
            responses[code] = OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[code])
    return responses
