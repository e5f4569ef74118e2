from django.urls import path

import xiaoxiang.converters  # noqa: F401  (registers <order_id:...>)
from orders import views

app_name = "orders"

urlpatterns = [
    path("orders/", views.order_list, name="list"),
    path("orders/<order_id:order_id>/", views.order_detail, name="detail"),
]
