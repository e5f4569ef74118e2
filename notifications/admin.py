from django.contrib import admin

from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["user", "kind", "title", "order", "created_at", "read_at"]
    list_filter = ["kind", "read_at", "created_at"]
    search_fields = ["user__username", "title", "order__id"]
    list_select_related = ["user", "order"]
    readonly_fields = ["user", "order", "kind", "title", "body", "created_at"]
