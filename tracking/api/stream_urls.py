from django.urls import path

import xiaoxiang.converters  # noqa: F401  (registers <order_id:...>)
from tracking.api.stream import OrderEventsApi, order_poll_view

urlpatterns = [
    path("orders/<order_id:order_id>/events/", OrderEventsApi.as_view(), name="order-events"),
    path("orders/<order_id:order_id>/poll/", order_poll_view, name="order-poll"),
]
