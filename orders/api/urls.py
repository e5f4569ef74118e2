from django.urls import path

import xiaoxiang.converters  # noqa: F401  (registers <order_id:...>)
from orders.api import views

urlpatterns = [
    path("auth/register/", views.RegisterApi.as_view(), name="api-register"),
    path("auth/token/", views.TokenObtainApi.as_view(), name="api-token"),
    path("auth/token/refresh/", views.TokenRefreshApi.as_view(), name="api-token-refresh"),
    path("auth/logout/", views.LogoutApi.as_view(), name="api-logout"),
    path("products/", views.ProductListApi.as_view(), name="api-products"),
    path("orders/", views.OrderListCreateApi.as_view(), name="api-orders"),
    path("orders/<order_id:order_id>/", views.OrderDetailApi.as_view(), name="api-order-detail"),
    path("orders/<order_id:order_id>/pay/", views.OrderPayApi.as_view(), name="api-order-pay"),
    path("orders/<order_id:order_id>/cancel/", views.OrderCancelApi.as_view(), name="api-order-cancel"),
    path("warehouse/orders/", views.WarehouseOrderListApi.as_view(), name="api-warehouse-orders"),
    path("warehouse/orders/<order_id:order_id>/stage/", views.WarehouseStageApi.as_view(), name="api-warehouse-stage"),
    path(
        "warehouse/orders/<order_id:order_id>/dispatch/",
        views.WarehouseDispatchApi.as_view(),
        name="api-warehouse-dispatch",
    ),
    path("rider/orders/", views.RiderOrderListApi.as_view(), name="api-rider-orders"),
    path("rider/orders/<order_id:order_id>/delivered/", views.RiderDeliveredApi.as_view(), name="api-rider-delivered"),
]
