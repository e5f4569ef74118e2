"""Creating notifications: stored, pushed live after commit, e-mailed when important."""

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from notifications.models import Notification
from xiaoxiang.errors import NotFound
from xiaoxiang.push import group_send

if TYPE_CHECKING:
    from orders.models import Order


def notifications_group(user_id: int) -> str:
    """The one place that names a user's notification group."""
    return f"notifications.{user_id}"


def notification_payload(notification: Notification) -> dict:
    return {
        "id": notification.id,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "order": notification.order_id,
        "created": notification.created_at.isoformat(),
        "read": notification.is_read,
    }


def notification_send(
    *,
    user: AbstractBaseUser,
    kind: str,
    title: str,
    body: str = "",
    order: "Order | None" = None,
    email: bool = False,
) -> Notification:
    """Store a notification for `user`; after commit push it on /ws/notifications/ and, if asked, e-mail it."""
    notification = Notification.objects.create(user=user, order=order, kind=kind, title=title, body=body)
    payload = notification_payload(notification)
    transaction.on_commit(
        lambda: group_send(notifications_group(user.pk), {"type": "notification.created", "notification": payload})
    )
    if email and user.email:
        transaction.on_commit(
            lambda: send_mail(title, body or title, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=True)
        )
    return notification


# What each order notification says and whether it is important enough to e-mail.
ORDER_NOTICES: dict[str, tuple[str, str, bool]] = {
    "order.paid": ("订单已支付", "我们已收到订单 {order} 的付款，仓库即将开始拣货。", False),
    "order.picking": ("开始拣货", "仓库已开始为订单 {order} 拣货。", False),
    "order.dispatched": ("骑手已出发", "订单 {order} 已交给骑手 {rider}，正在配送中。", True),
    "order.delivered": ("订单已送达", "订单 {order} 已送达，祝您用餐愉快。", True),
    "order.cancelled": ("订单已取消", "订单 {order} 已取消。", True),
    "order.assigned": ("新的配送任务", "订单 {order} 已分配给您，请到仓库取货。", False),
    "order.incoming": ("新订单待拣货", "订单 {order} 已支付，请开始拣货。", False),
}


def order_notify(*, order: "Order", kind: str, user: AbstractBaseUser | None = None) -> Notification:
    """Tell the order's customer (or `user`, e.g. its rider) about `kind`; call inside the change's transaction."""
    title, body, email = ORDER_NOTICES[kind]
    rider = getattr(getattr(order.rider, "rider_profile", None), "display_name", None) if order.rider else None
    return notification_send(
        user=user or order.user,
        kind=kind,
        title=title,
        body=body.format(order=order.id, rider=rider or (order.rider.get_username() if order.rider else "")),
        order=order,
        email=email,
    )


@transaction.atomic
def notification_mark_read(*, user: AbstractBaseUser, notification_id: int) -> Notification:
    """Mark one of the user's own notifications read (idempotent); NotFound for anyone else's."""
    notification = Notification.objects.select_for_update().filter(pk=notification_id, user=user).first()
    if notification is None:
        raise NotFound()
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


def notifications_mark_read_before(*, users: list[AbstractBaseUser], before) -> int:
    """Mark these users' notifications created before `before` read; how many were unread.

    For history written for the demo: it is the past, and a visitor signing
    in as a demo account should not meet a bell with 99+ old notifications.
    """
    return Notification.objects.filter(user__in=users, created_at__lt=before, read_at__isnull=True).update(
        read_at=before
    )


def order_notify_warehouse(*, order: "Order") -> None:
    """Tell every operator of the order's warehouse that a paid order is waiting (the /warehouse/ page's push)."""
    for operator in order.warehouse.operators.select_related("user"):
        order_notify(order=order, kind="order.incoming", user=operator.user)
