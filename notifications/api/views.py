"""GET /api/notifications/ and POST /api/notifications/{id}/read/: the caller's own notifications."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.models import Notification
from notifications.selectors import notifications_for_user
from notifications.services import notification_mark_read


class NotificationOutputSerializer(serializers.ModelSerializer):
    created = serializers.DateTimeField(source="created_at", read_only=True)
    # Output only; not marked read-only so the documented shape stays as it was.
    read = serializers.BooleanField(source="is_read", required=False)

    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "order", "created", "read"]


class NotificationListApi(ListAPIView):
    serializer_class = NotificationOutputSerializer

    def get_queryset(self):
        return notifications_for_user(user=self.request.user)

    @extend_schema(summary="My notifications, newest first (paginated)", tags=["notifications"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class NotificationReadApi(APIView):
    @extend_schema(
        summary="Mark one of my notifications read",
        tags=["notifications"],
        request=None,
        responses={200: NotificationOutputSerializer, 404: OpenApiResponse(description="Not one of mine")},
    )
    def post(self, request: Request, notification_id: int) -> Response:
        notification = notification_mark_read(user=request.user, notification_id=notification_id)
        return Response(NotificationOutputSerializer(notification).data)
