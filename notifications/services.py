"""Creating notifications: stored, pushed live after commit, e-mailed when important."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import transaction

from notifications.models import Notification
from orders.models import Order
from tracking import realtime


def notification_payload(notification: Notification) -> dict:
    return {
        "id": notification.id,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "order": notification.order_id,
        "created": notification.created.isoformat(),
        "read": notification.read,
    }


def notification_send(
    *,
    user: AbstractBaseUser,
    kind: str,
    title: str,
    body: str = "",
    order: Order | None = None,
    email: bool = False,
) -> Notification:
    """Store a notification for `user`; after commit push it on /ws/notifications/ and, if asked, e-mail it."""
    notification = Notification.objects.create(user=user, order=order, kind=kind, title=title, body=body)
    payload = notification_payload(notification)
    transaction.on_commit(
        lambda: realtime.group_send(
            realtime.notifications_group(user.pk), {"type": "notification.created", "notification": payload}
        )
    )
    if email and user.email:
        transaction.on_commit(
            lambda: send_mail(title, body or title, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=True)
        )
    return notification
