from django.urls import path

from tracking.api import views

urlpatterns = [
    path("rider/locations/", views.RiderLocationsApi.as_view(), name="api-rider-locations"),
    path("orders/<str:order_id>/trajectory/", views.OrderTrajectoryApi.as_view(), name="api-order-trajectory"),
]
