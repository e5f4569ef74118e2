from django.urls import path

from tracking.api import device, views

urlpatterns = [
    path("rider/locations/", views.RiderLocationsApi.as_view(), name="api-rider-locations"),
    path("rider/status/", device.RiderStatusApi.as_view(), name="api-rider-status"),
    path("orders/<str:order_id>/trajectory/", views.OrderTrajectoryApi.as_view(), name="api-order-trajectory"),
]
