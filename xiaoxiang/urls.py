from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from xiaoxiang.middleware import server_error

urlpatterns = [
    path("", RedirectView.as_view(url="/orders/", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("orders.api.urls")),
    path("api/", include("tracking.api.urls")),
    path("api/", include("tracking.api.stream_urls")),
    path("api/", include("notifications.api.urls")),
    path("", include("orders.urls")),
    path("", include("orders.terminal_urls")),
    path("", include("tracking.urls")),
]


def handler404(request, exception=None):
    """JSON under /api/ (clients parse `detail`), Django's page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


handler500 = server_error
