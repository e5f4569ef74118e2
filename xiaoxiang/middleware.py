"""Project middleware: 503 instead of 500 while the database is down, and WhiteNoise in an async chain."""

import logging
import sys

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults
from whitenoise.middleware import WhiteNoiseMiddleware

from xiaoxiang import metrics
from xiaoxiang.errors import DATABASE_DOWN, DATABASE_RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)


def database_unavailable_response(request: HttpRequest, error: BaseException) -> HttpResponse:
    """503 with Retry-After and a `detail` (JSON under /api/, text elsewhere)."""
    logger.warning("database unavailable for %s %s: %s", request.method, request.path, error)
    metrics.database_unavailable("http")
    detail = "The database is unavailable; nothing was changed. Retry shortly."
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": detail}, status=503)
    else:
        response = HttpResponse(detail, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A view (DRF's included: it re-raises what it does not handle) that found the database down answers 503."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_DOWN):
            return database_unavailable_response(request, exception)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the same 503 when a middleware (sessions, auth) found the database down; else Django's 500."""
    error = sys.exc_info()[1]
    if isinstance(error, DATABASE_DOWN):
        return database_unavailable_response(request, error)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


class SyncAndAsyncMiddleware:
    """A middleware that stays sync in a sync chain (gunicorn) and async in an async one (Daphne).

    Subclasses write `__call__` for the sync chain, beginning with
    `if self.async_mode: return self.__acall__(request)`, and `__acall__` for the
    async one. An async chain must stay async: a sync middleware in it would
    make Django run every request below it in a thread, long-polls included.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)


# Stock WhiteNoiseMiddleware is sync-only, which makes Django run every request
# below it in a thread, async views included: a 30 s long-poll would pin a
# thread for its whole wait. This subclass serves files the same way and
# otherwise awaits the rest of the chain on the event loop.


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None) -> None:
        super().__init__(get_response)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            # Opening the file is quick; the body streams from Django's handler.
            return self.serve(static_file, request)
        return await self.get_response(request)
