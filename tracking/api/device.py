"""POST /api/rider/status/: the rider app's device report (additive to DESIGN section 4)."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from tracking.device_services import rider_device_report
from tracking.models import DeviceLocation
from xiaoxiang.api import JsonApiView, StrictFloatField, error_responses
from xiaoxiang.roles import ROLE_RIDER


class DeviceStatusInputSerializer(serializers.Serializer):
    location = serializers.ChoiceField(
        choices=DeviceLocation.choices,
        help_text="`ok`; `denied`: the rider refused location permission; `unavailable`: no fix can be had.",
    )
    battery_level = StrictFloatField(
        required=False, allow_null=True, default=None, min_value=0, max_value=1, help_text="0 to 1, when known."
    )
    charging = serializers.BooleanField(required=False, allow_null=True, default=None)


class DeviceStatusOutputSerializer(serializers.Serializer):
    location = serializers.CharField(allow_null=True)
    battery_level = serializers.FloatField(allow_null=True)
    charging = serializers.BooleanField(allow_null=True)
    reported_at = serializers.DateTimeField()
    reason = serializers.CharField(allow_blank=True, help_text="Why the rider may be dark, in words; empty if fine.")


class RiderStatusApi(JsonApiView):
    allowed_roles = (ROLE_RIDER,)

    @extend_schema(
        tags=["rider"],
        summary="Report the device's state (location permission and fix, battery)",
        description=(
            "Sent by the rider app with its next upload, and on its own when it has no point to send "
            "(location denied or unavailable), so staff see why a rider is dark."
        ),
        request=DeviceStatusInputSerializer,
        examples=[
            OpenApiExample(
                "Location denied, battery low",
                request_only=True,
                value={"location": "denied", "battery_level": 0.12, "charging": False},
            )
        ],
        responses={200: DeviceStatusOutputSerializer, **error_responses(400, 401, 403, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = DeviceStatusInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rider = rider_device_report(rider_user=request.user, **serializer.validated_data)
        return Response(DeviceStatusOutputSerializer(rider.device_state()).data)
