from django.urls import path

import xiaoxiang.converters  # noqa: F401  (registers <order_id:...>)
from tracking.api import device, views

urlpatterns = [
    path("rider/locations/", views.RiderLocationsApi.as_view(), name="api-rider-locations"),
    path("rider/status/", device.RiderStatusApi.as_view(), name="api-rider-status"),
    path("orders/<order_id:order_id>/trajectory/", views.OrderTrajectoryApi.as_view(), name="api-order-trajectory"),
]
