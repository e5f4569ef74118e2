from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from access.models import AUTO_BAN_REASON, BlockedNetwork


class ActiveFilter(admin.SimpleListFilter):
    title = "状态"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "生效中"), ("no", "已过期")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.exclude(expires_at__lte=now)
        if self.value() == "no":
            return queryset.filter(expires_at__lte=now)
        return queryset


class AutomaticFilter(admin.SimpleListFilter):
    title = "来源"
    parameter_name = "automatic"

    def lookups(self, request, model_admin):
        return [("yes", "自动封禁"), ("no", "人工添加")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(reason=AUTO_BAN_REASON)
        if self.value() == "no":
            return queryset.exclude(reason=AUTO_BAN_REASON)
        return queryset


@admin.register(BlockedNetwork)
class BlockedNetworkAdmin(admin.ModelAdmin):
    """The IP blocklist: addresses and CIDR ranges, with a reason and an optional expiry (empty: until removed)."""

    list_display = ["network", "reason", "expires_at", "is_active", "created_at", "created_by"]
    list_filter = [ActiveFilter, AutomaticFilter]
    search_fields = ["network", "reason"]
    fields = ["network", "reason", "expires_at", "created_at", "created_by"]
    readonly_fields = ["created_at", "created_by"]
    actions = ["lift"]

    @admin.display(boolean=True, description="生效中")
    def is_active(self, entry: BlockedNetwork) -> bool:
        return entry.active

    def save_model(self, request: HttpRequest, obj: BlockedNetwork, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="立即解除所选封禁")
    def lift(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Expired, not deleted: the record of who was blocked and why stays.
        lifted = 0
        for entry in queryset.exclude(expires_at__lte=timezone.now()):
            entry.expires_at = timezone.now()
            entry.save(update_fields=["expires_at"])
            lifted += 1
        self.message_user(request, f"Lifted: {lifted} entr{'y' if lifted == 1 else 'ies'}.")
