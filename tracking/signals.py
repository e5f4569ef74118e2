"""The realtime hook: committed tracking events are published, never before commit."""

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

from tracking.models import TrackingEvent
from tracking.publish import events_publish

# bulk_create sends no post_save; the location ingest sends this instead.
tracking_events_bulk_created = Signal()


@receiver(post_save, sender=TrackingEvent, dispatch_uid="tracking.publish_event")
def publish_saved_event(sender, instance: TrackingEvent, created: bool, **kwargs) -> None:
    if created:
        _publish_on_commit([instance])


@receiver(tracking_events_bulk_created, dispatch_uid="tracking.publish_bulk_events")
def publish_bulk_events(sender, events: list[TrackingEvent], **kwargs) -> None:
    _publish_on_commit(events)


def _publish_on_commit(events: list[TrackingEvent]) -> None:
    # A rolled-back write never reaches a watcher: on_commit drops the callback.
    transaction.on_commit(lambda: events_publish(events))
