from django.urls import path

import xiaoxiang.converters  # noqa: F401  (registers <order_id:...>)
from tracking.consumers import OpsConsumer, OrderConsumer

websocket_urlpatterns = [
    path("ws/orders/<order_id:order_id>/", OrderConsumer.as_asgi()),
    path("ws/ops/", OpsConsumer.as_asgi()),
]
