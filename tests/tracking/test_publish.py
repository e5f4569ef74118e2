"""The realtime hook: committed tracking events reach the order's channel-layer
group after commit, and a rolled-back write publishes nothing."""

import asyncio
import contextlib
import queue
import threading

import pytest
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.db import transaction

from orders import services
from tracking.publish import order_group

pytestmark = pytest.mark.django_db(transaction=True)


class Listener:
    """A channel subscribed to one order's group, read on its own thread and loop.

    channels-redis binds a layer to one loop, so each listener gets its own
    Redis layer instance; the in-memory layer must be
    the publisher's instance, and its asyncio queues are not woken across
    threads, so the listener polls with a short timeout.
    """

    def __init__(self, order_id: str) -> None:
        self.messages: queue.Queue = queue.Queue()
        subscribed = threading.Event()

        async def listen() -> None:
            layer = get_channel_layer()
            if not isinstance(layer, InMemoryChannelLayer):
                layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
            channel = await layer.new_channel()
            await layer.group_add(order_group(order_id), channel)
            subscribed.set()
            while True:
                if not isinstance(layer, InMemoryChannelLayer):
                    # A cancelled receive drops a pub/sub channel: wait without a timeout.
                    self.messages.put(await layer.receive(channel))
                    continue
                with contextlib.suppress(TimeoutError):
                    self.messages.put(await asyncio.wait_for(layer.receive(channel), 0.05))

        threading.Thread(target=asyncio.run, args=(listen(),), daemon=True).start()
        assert subscribed.wait(5)

    def receive(self, timeout: float = 2.0) -> dict | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None


def test_event_is_published_only_after_commit(make_order, customer):
    order = make_order("pending")
    listener = Listener(order.id)
    with transaction.atomic():
        services.order_pay(order_id=order.id, customer=customer)
        assert listener.receive(timeout=0.3) is None  # nothing before commit
    message = listener.receive()
    assert message["type"] == "order.events"
    assert message["order_id"] == order.id
    assert message["version"] == 2
    assert [(e["version"], e["kind"], e["status"]) for e in message["events"]] == [(2, "status", 2)]
    assert listener.receive(timeout=0.3) is None  # exactly one message


def test_rolled_back_write_publishes_nothing(make_order, operator):
    order = make_order("paid")
    listener = Listener(order.id)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.order_stage_report(order_id=order.id, operator=operator, stage="picking")
        raise RuntimeError("boom after the write")
    assert listener.receive(timeout=0.5) is None
    order.refresh_from_db()
    assert (order.version, order.stage) == (2, "")


def test_refused_write_publishes_nothing(make_order, customer):
    order = make_order("cancelled")
    listener = Listener(order.id)
    with pytest.raises(services.Conflict):
        services.order_pay(order_id=order.id, customer=customer)
    assert listener.receive(timeout=0.5) is None


@pytest.mark.redis
def test_publish_goes_through_redis_layer(make_order, customer, settings):
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "xiaoxiang.layers.PubSubChannelLayer"
    test_event_is_published_only_after_commit(make_order, customer)


def test_point_batches_advance_the_cached_snapshot_exactly_as_a_rebuild(make_order, rider, monkeypatch):
    import datetime as dt

    from django.core.cache import cache
    from django.utils import timezone

    from orders.models import Order
    from tracking import publish
    from tracking.services import LocationPoint, location_points_ingest
    from tracking.snapshot import order_snapshot_build, snapshot_cache_key, snapshot_cached

    order = make_order("delivering")
    rebuilds = []
    real_build = publish.order_snapshot_build
    monkeypatch.setattr(publish, "order_snapshot_build", lambda **kw: rebuilds.append(1) or real_build(**kw))
    now = timezone.now()  # points before the order's creation would be refused

    def ingest(client_id: str, lat: float, seconds_after: float) -> None:
        point = LocationPoint(
            client_id=client_id, lat=lat, lon=121.44, recorded_at=now + dt.timedelta(seconds=seconds_after)
        )
        location_points_ingest(rider_user=rider, points=[(0, point)])

    def cached_equals_rebuild() -> bool:
        fresh = order_snapshot_build(order=Order.objects.get(pk=order.id))
        return snapshot_cached(order.id) == fresh

    ingest("p1", 31.191, 20)  # newest: moves the position
    assert cached_equals_rebuild()
    assert snapshot_cached(order.id)["rider_position"]["lat"] == 31.191
    ingest("p2", 31.192, 5)  # late: fills history, position stays
    assert cached_equals_rebuild()
    assert snapshot_cached(order.id)["rider_position"]["lat"] == 31.191
    # Same device time as p1 (22 m off, GPS noise): the later version wins, as in the selector.
    ingest("p3", 31.1912, 20)
    assert cached_equals_rebuild()
    assert snapshot_cached(order.id)["rider_position"]["lat"] == 31.1912
    assert rebuilds == []  # points never rebuilt the snapshot

    cache.delete(snapshot_cache_key(order.id))
    ingest("p4", 31.194, 30)  # nothing cached to advance: rebuilt
    assert rebuilds == [1]
    assert cached_equals_rebuild()
