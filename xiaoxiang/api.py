"""API-wide plumbing: every error is JSON {"detail": ..., field errors...}."""

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from orders.errors import DomainError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.status_code)
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
