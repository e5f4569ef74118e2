"""Reads of notifications: a user only ever sees their own."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from notifications.models import Notification


def notifications_for_user(*, user: AbstractBaseUser) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).select_related("order")


def notifications_unread_count(*, user: AbstractBaseUser) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
