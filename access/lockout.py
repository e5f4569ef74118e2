"""What a login locked out by django-axes answers (AXES_LOCKOUT_CALLABLE): 429 with a clear `detail`."""

import math

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

LOCKOUT_DETAIL = "Too many failed logins for this account from your address. Try again in {minutes} minutes."


def lockout_response(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None):
    cool_off = settings.AXES_COOLOFF_TIME.total_seconds()
    detail = LOCKOUT_DETAIL.format(minutes=max(1, math.ceil(cool_off / 60)))
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": detail}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"detail": detail}, status=429)
    # The cool-off restarts with each failure during it, so this is the earliest a retry may pass.
    response["Retry-After"] = str(math.ceil(cool_off))
    return response


def login_succeeded(*, request: HttpRequest, user: AbstractBaseUser) -> None:
    """A token login succeeded: clear its failures, as axes does on Django's user_logged_in (which it never sends)."""
    AxesProxyHandler.user_logged_in(sender=type(user), request=request, user=user)
