"""Customer pages: my orders and the live order page (the data comes from the selectors)."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from orders.models import OrderStatus
from orders.selectors import order_get_for_user, orders_visible_to, viewer_role
from tracking.snapshot import order_snapshot_for_role
from xiaoxiang.errors import NotFound

# What a customer reads: "paid" means the warehouse is working on it.
CUSTOMER_STATUS_LABELS = {
    OrderStatus.PENDING_PAYMENT: "待支付",
    OrderStatus.PAID: "仓库处理中",
    OrderStatus.DELIVERING: "配送中",
    OrderStatus.COMPLETED: "已送达",
    OrderStatus.CANCELLED: "已取消",
}
ORDERS_PER_PAGE = 20


@login_required
def order_list(request: HttpRequest) -> HttpResponse:
    orders = orders_visible_to(request.user).prefetch_related("items").order_by("-create_time")
    page = Paginator(orders, ORDERS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [
        {
            "order": order,
            "status_label": CUSTOMER_STATUS_LABELS[OrderStatus(order.status)],
            "item_names": "、".join(item.name for item in order.items.all()),
            "item_count": sum(item.quantity for item in order.items.all()),
            "active": order.status in (OrderStatus.PAID, OrderStatus.DELIVERING),
        }
        for order in page
    ]
    return render(request, "orders/order_list.html", {"page": page, "rows": rows})


@login_required
def order_detail(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        order = order_get_for_user(user=request.user, order_id=order_id)
    except NotFound:
        raise Http404("No such order.") from None
    role = viewer_role(user=request.user, order=order)
    snapshot = order_snapshot_for_role(order=order, role=role)
    context = {
        "order": order,
        "snapshot": snapshot,
        "status_label": CUSTOMER_STATUS_LABELS[OrderStatus(order.status)],
        "live_config": {"orderId": order.id, "role": role, "tileUrl": settings.MAP_TILE_URL},
    }
    return render(request, "orders/order_detail.html", context)
