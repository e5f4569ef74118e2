"""Hooks: a saved or deleted blocklist entry refreshes this process's copy; a logout closes that session's sockets."""

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from access.blocklist import blocklist
from access.models import BlockedNetwork
from xiaoxiang.push import group_send
from xiaoxiang.sockets import SESSION_ENDED, session_group


@receiver([post_save, post_delete], sender=BlockedNetwork)
def blocklist_changed(sender, **kwargs) -> None:
    # After commit: a reload before it would read the old rows. Other processes reload on their timer.
    transaction.on_commit(blocklist.invalidate)


@receiver(user_logged_out)
def session_sockets_close(sender, request, user, **kwargs) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        # Every socket opened with this session joined its group (xiaoxiang.sockets): each closes 4401.
        group_send(session_group(session_key), {"type": SESSION_ENDED})
