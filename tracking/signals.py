"""The realtime hook: committed tracking events are published, never before commit.

The GPS ingest stores its points in one statement (no post_save) and
publishes them itself after commit, with the ops map and job debounce in the
same send (tracking.services.location_points_ingest).
"""

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from tracking.models import TrackingEvent
from tracking.publish import events_publish


@receiver(post_save, sender=TrackingEvent, dispatch_uid="tracking.publish_event")
def publish_saved_event(sender, instance: TrackingEvent, created: bool, **kwargs) -> None:
    if created:
        _publish_on_commit([instance])


def _publish_on_commit(events: list[TrackingEvent]) -> None:
    # A rolled-back write never reaches a watcher: on_commit drops the callback.
    transaction.on_commit(lambda: events_publish(events))
