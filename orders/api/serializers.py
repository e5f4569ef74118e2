"""Input and output serializers of the orders API, one pair per use case.

Output serializers document the payloads for OpenAPI; the order snapshot
itself is built by orders.selectors and only described here.
"""

from typing import Any

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from orders.models import Order, Stage
from orders.services import MAX_QUANTITY
from xiaoxiang.api import StrictFloatField


class IsoDateTimeField(serializers.DateTimeField):
    """Output only: the same ISO-8601 form the order snapshot uses."""

    def to_representation(self, value: Any) -> str | None:
        return value.isoformat() if value else None


# --- Auth ----------------------------------------------------------------------


class RegisterInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class AccountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    role = serializers.CharField()


class TokenPairOutputSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class LogoutInputSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- Catalogue -----------------------------------------------------------------


class ProductSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    unit = serializers.CharField()


# --- Orders: input -------------------------------------------------------------


class OrderItemInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=32)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderCreateInputSerializer(serializers.Serializer):
    items = OrderItemInputSerializer(many=True, allow_empty=False, max_length=50)
    delivery_address = serializers.CharField(max_length=255)
    delivery_lat = StrictFloatField(min_value=-90, max_value=90)
    delivery_lon = StrictFloatField(min_value=-180, max_value=180)


class VersionInputSerializer(serializers.Serializer):
    expected_version = serializers.IntegerField(required=False, min_value=0, allow_null=True, default=None)


class StageInputSerializer(VersionInputSerializer):
    stage = serializers.ChoiceField(choices=Stage.choices)


class DispatchInputSerializer(VersionInputSerializer):
    rider = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default=None, help_text="A rider's username."
    )


# --- Orders: output ------------------------------------------------------------


class OrderItemSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=10, decimal_places=2)
    line_total = serializers.DecimalField(max_digits=10, decimal_places=2)


class PlaceSerializer(serializers.Serializer):
    name = serializers.CharField()
    lat = serializers.FloatField()
    lon = serializers.FloatField()


class DeliverySerializer(serializers.Serializer):
    address = serializers.CharField()
    lat = serializers.FloatField()
    lon = serializers.FloatField()


class RiderSerializer(serializers.Serializer):
    name = serializers.CharField()
    username = serializers.CharField(required=False, help_text="Not shown to customers.")
    phone = serializers.CharField(required=False, allow_blank=True, help_text="Not shown to customers.")


class PositionSerializer(serializers.Serializer):
    lat = serializers.FloatField()
    lon = serializers.FloatField()
    recorded_at = serializers.DateTimeField()


class TimelineEntrySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["status", "stage"])
    status = serializers.IntegerField()
    stage = serializers.CharField(allow_null=True)
    time = serializers.DateTimeField()
    label = serializers.CharField()


class AlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    message = serializers.CharField()
    opened_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class OrderSnapshotSerializer(serializers.Serializer):
    """The order snapshot of DESIGN section 4, as the caller's role may see it."""

    id = serializers.CharField()
    status = serializers.IntegerField()
    status_name = serializers.CharField()
    status_display = serializers.CharField()
    stage = serializers.CharField(allow_null=True)
    version = serializers.IntegerField()
    total_amount = serializers.DecimalField(max_digits=10, decimal_places=2)
    items = OrderItemSerializer(many=True)
    create_time = serializers.DateTimeField()
    update_time = serializers.DateTimeField()
    promised_at = serializers.DateTimeField()
    eta = serializers.DateTimeField(allow_null=True)
    warehouse = PlaceSerializer()
    delivery = DeliverySerializer()
    rider = RiderSerializer(allow_null=True, help_text="Customers see the display name only.")
    rider_position = PositionSerializer(
        allow_null=True, help_text="Customers see it only while delivering, coarsened to 4 decimals."
    )
    timeline = TimelineEntrySerializer(many=True)
    alerts = AlertSerializer(many=True, required=False, help_text="Staff only.")


class WarehousePlaceSerializer(serializers.Serializer):
    name = serializers.CharField()
    lat = serializers.FloatField(source="latitude")
    lon = serializers.FloatField(source="longitude")


class OrderDeliverySerializer(serializers.Serializer):
    address = serializers.CharField(source="delivery_address")
    lat = serializers.FloatField(source="delivery_lat")
    lon = serializers.FloatField(source="delivery_lon")


class OrderSummarySerializer(serializers.Serializer):
    """One order in a list: enough to show it and act on it, without its history."""

    id = serializers.CharField()
    status = serializers.IntegerField()
    status_name = serializers.CharField()
    status_display = serializers.CharField(source="get_status_display")
    stage = serializers.SerializerMethodField()
    version = serializers.IntegerField()
    total_amount = serializers.DecimalField(max_digits=10, decimal_places=2)
    items = OrderItemSerializer(many=True, source="items.all")
    create_time = IsoDateTimeField()
    update_time = IsoDateTimeField()
    promised_at = IsoDateTimeField()
    eta = IsoDateTimeField(allow_null=True)
    warehouse = WarehousePlaceSerializer()
    delivery = OrderDeliverySerializer(source="*")

    def get_stage(self, order: Order) -> str | None:
        return order.stage or None
