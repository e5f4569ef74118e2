from django.urls import path

from tracking.api.stream import OrderEventsApi, order_poll_view

urlpatterns = [
    path("orders/<str:order_id>/events/", OrderEventsApi.as_view(), name="order-events"),
    path("orders/<str:order_id>/poll/", order_poll_view, name="order-poll"),
]
