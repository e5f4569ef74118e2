"""/ws/notifications/: the connected user's notifications, live."""

from typing import Any

from channels.db import database_sync_to_async

from notifications.selectors import notifications_unread_count
from tracking import realtime
from tracking.consumers import StreamConsumer
from xiaoxiang import metrics


class NotificationConsumer(StreamConsumer):
    async def opened(self) -> None:
        await self.join(realtime.notifications_group(self.user.pk))
        unread = await database_sync_to_async(notifications_unread_count)(user=self.user)
        async with self.send_lock:
            await self.send_json({"type": "notifications.unread", "count": unread})

    async def notification_created(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.send_json({"type": "notification.created", "notification": message["notification"]})
        metrics.frame_written("notifications", message)
