"""The role terminals in the browser: /shop/ (customer), /warehouse/ (operator), /rider/ (rider web app).

Each page is a shell: the data and every write go through the public REST API
and the sockets, with the browser's session, like the live order page.
"""

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.cache import never_cache

from orders.models import Warehouse
from tracking.selectors import riders_available
from xiaoxiang.roles import ROLE_CUSTOMER, ROLE_RIDER, ROLE_WAREHOUSE, user_role

# Bump when the rider app's shell changes: the service worker then drops its old cache.
RIDER_SHELL_VERSION = "1"


def role_context(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: the signed-in user's role, for the header's links."""
    return {"user_role": user_role(request.user) if hasattr(request, "user") else None}


def role_page(role: str) -> Callable:
    """Signed-in users of `role` only; anyone else goes to the login page (which says when the account cannot)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if user_role(request.user) != role:
                return redirect_to_login(request.get_full_path())
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _place(warehouse: Warehouse | None) -> dict[str, Any] | None:
    if warehouse is None:
        return None
    return {"name": warehouse.name, "lat": float(warehouse.latitude), "lon": float(warehouse.longitude)}


@role_page(ROLE_CUSTOMER)
def shop(request: HttpRequest) -> HttpResponse:
    config = {
        "tileUrl": settings.MAP_TILE_URL,
        "warehouse": _place(Warehouse.objects.filter(active=True).first()),
    }
    return render(request, "terminals/shop.html", {"shop_config": config})


@role_page(ROLE_WAREHOUSE)
def warehouse(request: HttpRequest) -> HttpResponse:
    operator = getattr(request.user, "warehouse_operator", None)
    place = operator.warehouse if operator else None
    riders = [
        {"username": rider.user.get_username(), "name": rider.display_name}
        for rider in riders_available().order_by("display_name")[:200]
    ]
    config = {"warehouse": _place(place), "riders": riders}
    return render(request, "terminals/warehouse.html", {"warehouse_config": config, "place": place})


@never_cache
@role_page(ROLE_RIDER)
def rider(request: HttpRequest) -> HttpResponse:
    config = {
        "tileUrl": settings.MAP_TILE_URL,
        "reportSeconds": settings.RIDER_REPORT_SECONDS,
        "batchMax": settings.LOCATION_BATCH_MAX,
        "username": request.user.get_username(),
        "serviceWorker": "/rider/sw.js",
    }
    return render(request, "terminals/rider.html", {"rider_config": config})


def rider_manifest(request: HttpRequest) -> HttpResponse:
    response = render(request, "terminals/rider.webmanifest", content_type="application/manifest+json")
    return response


@never_cache
def rider_service_worker(request: HttpRequest) -> HttpResponse:
    """The rider app's service worker, served under /rider/ so its scope is the app."""
    shell = [
        "/rider/",
        "/rider/manifest.webmanifest",
        *(
            static(path)
            for path in (
                "css/map.css",
                "css/app.css",
                "css/terminals.css",
                "img/favicon.svg",
                "vendor/leaflet/leaflet.css",
                "vendor/leaflet/leaflet.js",
                "js/map-common.js",
                "js/notifications.js",
                "js/order-stream.js",
                "js/rider-queue.js",
                "js/rider-app.js",
            )
        ),
    ]
    context = {"shell": json.dumps(shell), "version": RIDER_SHELL_VERSION}
    return render(request, "terminals/rider-sw.js", context, content_type="text/javascript")
