from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orders import services
from orders.models import Order, OrderItem, Product, Warehouse, WarehouseOperator
from tracking.models import TrackingEvent
from xiaoxiang.errors import DomainError


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "unit", "active"]
    list_filter = ["active"]
    search_fields = ["sku", "name"]


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "latitude", "longitude", "geohash", "active"]
    list_filter = ["active"]
    search_fields = ["code", "name"]
    readonly_fields = ["geohash"]


@admin.register(WarehouseOperator)
class WarehouseOperatorAdmin(admin.ModelAdmin):
    list_display = ["user", "warehouse"]
    list_filter = ["warehouse"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    fields = ["sku", "name", "unit_price", "quantity", "line_total"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class TimelineInline(admin.TabularInline):
    """The order's status and stage events, oldest first (GPS points live on the trajectory)."""

    model = TrackingEvent
    verbose_name_plural = "时间线"
    fields = ["version", "kind", "status", "stage", "operator_type", "operator_id", "recorded_at", "create_time"]
    readonly_fields = fields
    ordering = ["version"]
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).exclude(kind="location")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "user",
        "status",
        "stage",
        "warehouse",
        "rider",
        "total_amount",
        "version",
        "promised_at",
        "eta",
        "create_time",
    ]
    list_filter = ["status", "stage", "warehouse", "rider", "create_time"]
    search_fields = ["id", "user__username", "user__email"]
    date_hierarchy = "create_time"
    list_select_related = ["user", "warehouse", "rider"]
    inlines = [OrderItemInline, TimelineInline]
    actions = ["cancel_orders", "dispatch_to_nearest_rider"]
    # Every change goes through the services (versioned, evented); nothing is edited here.
    readonly_fields = [
        "id", "user", "status", "stage", "total_amount", "warehouse", "rider", "delivery_address", "delivery_lat",
        "delivery_lon", "promised_at", "eta", "paid_at", "dispatched_at", "delivered_at", "cancelled_at",
        "version", "create_time", "update_time",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def _run(self, request: HttpRequest, queryset: QuerySet, action, label: str) -> None:
        done = 0
        for order in queryset:
            try:
                action(order)
                done += 1
            except DomainError as error:
                self.message_user(request, f"{order.id}: {error.detail}", messages.WARNING)
        if done:
            self.message_user(request, f"{label}: {done} order(s).", messages.SUCCESS)

    @admin.action(description="取消所选订单（待支付或已支付）")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(request, queryset, lambda o: services.order_cancel(order_id=o.id, actor=request.user), "Cancelled")

    @admin.action(description="将所选已打包订单派给最近的可用骑手")
    def dispatch_to_nearest_rider(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(
            request, queryset, lambda o: services.order_dispatch(order_id=o.id, operator=request.user), "Dispatched"
        )
