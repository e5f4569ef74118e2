from django.contrib import admin
from django.http import HttpRequest

from tracking.models import Alert, EtaFit, Rider, TrackingEvent


@admin.register(TrackingEvent)
class TrackingEventAdmin(admin.ModelAdmin):
    list_display = [
        "order",
        "version",
        "kind",
        "status",
        "stage",
        "latitude",
        "longitude",
        "quality_flags",
        "recorded_at",
        "create_time",
    ]
    list_filter = ["kind", "status", "stage", "operator_type", "quality_flags", "create_time"]
    search_fields = ["order__id", "client_id", "operator_id"]
    list_select_related = ["order"]
    # History is append-only: events are written by services only.
    readonly_fields = [f.name for f in TrackingEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Rider)
class RiderAdmin(admin.ModelAdmin):
    list_display = ["display_name", "user", "online", "last_lat", "last_lon", "last_recorded_at", "last_seen_at"]
    list_filter = ["online"]
    search_fields = ["display_name", "user__username", "phone"]
    readonly_fields = ["last_lat", "last_lon", "last_recorded_at", "last_seen_at", "geohash"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["kind", "order", "rider", "message", "opened_at", "resolved_at"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter), "opened_at"]
    search_fields = ["order__id", "rider__username", "message"]
    list_select_related = ["order", "rider"]
    readonly_fields = ["order", "rider", "kind", "message", "data", "opened_at", "resolved_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(EtaFit)
class EtaFitAdmin(admin.ModelAdmin):
    """The ETA model's fits (newest is in use); refit with `manage.py eta_refit`."""

    list_display = ["fitted_at", "deliveries", "samples"]
    readonly_fields = ["fitted_at", "deliveries", "samples", "params"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
