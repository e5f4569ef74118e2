from django.urls import path

from orders import terminal_views as views

app_name = "terminals"

urlpatterns = [
    path("shop/", views.shop, name="shop"),
    path("warehouse/", views.warehouse, name="warehouse"),
    path("rider/", views.rider, name="rider"),
    path("rider/manifest.webmanifest", views.rider_manifest, name="rider-manifest"),
    path("rider/sw.js", views.rider_service_worker, name="rider-sw"),
]
