from django.urls import path

from tracking import views

app_name = "tracking"

urlpatterns = [
    path("ops/map/", views.ops_map, name="ops-map"),
    path("ops/map/state/", views.ops_state, name="ops-state"),
    path("ops/riders/<int:rider_id>/orders/", views.ops_rider_orders, name="ops-rider-orders"),
]
