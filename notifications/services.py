"""Creating notifications: stored, pushed live after commit, e-mailed when important."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import transaction

from notifications.models import Notification
from orders.errors import NotFound
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


# What each order notification says and whether it is important enough to e-mail.
ORDER_NOTICES: dict[str, tuple[str, str, bool]] = {
    "paid": ("订单已支付", "我们已收到订单 {order} 的付款，仓库即将开始拣货。", False),
    "picking": ("开始拣货", "仓库已开始为订单 {order} 拣货。", False),
    "dispatched": ("骑手已出发", "订单 {order} 已交给骑手 {rider}，正在配送中。", True),
    "delivered": ("订单已送达", "订单 {order} 已送达，祝您用餐愉快。", True),
    "cancelled": ("订单已取消", "订单 {order} 已取消。", True),
    "late": ("订单可能延迟", "订单 {order} 可能晚于承诺时间送达，我们正在处理。", True),
    "assigned": ("新的配送任务", "订单 {order} 已分配给您，请到仓库取货。", False),
    "incoming": ("新订单待拣货", "订单 {order} 已支付，请开始拣货。", False),
}


def order_notify(*, order: Order, kind: str, user: AbstractBaseUser | None = None) -> Notification:
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
    if not notification.read:
        notification.read = True
        notification.save(update_fields=["read"])
    return notification


def order_notify_warehouse(*, order: Order) -> None:
    """Tell every operator of the order's warehouse that a paid order is waiting (the /warehouse/ page's push)."""
    for operator in order.warehouse.operators.select_related("user"):
        order_notify(order=order, kind="incoming", user=operator.user)
