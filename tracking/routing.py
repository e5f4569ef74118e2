from django.urls import path

from tracking.consumers import OpsConsumer, OrderConsumer

websocket_urlpatterns = [
    path("ws/orders/<str:order_id>/", OrderConsumer.as_asgi()),
    path("ws/ops/", OpsConsumer.as_asgi()),
]
