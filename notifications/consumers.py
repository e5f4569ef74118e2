"""/ws/notifications/: the connected user's notifications, live."""

from typing import Any

from notifications.selectors import notifications_unread_count
from notifications.services import notifications_group
from xiaoxiang import metrics
from xiaoxiang.sockets import StreamConsumer, db_read


class NotificationConsumer(StreamConsumer):
    async def opened(self) -> None:
        await self.join(notifications_group(self.user.pk))
        unread = await db_read(notifications_unread_count)(user=self.user)
        async with self.send_lock:
            await self.send_json({"type": "notifications.unread", "count": unread})

    async def notification_created(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.send_json({"type": "notification.created", "notification": message["notification"]})
        metrics.frame_written("notifications", message)
