"""The rider app's device report: why a rider may be dark (location permission, no fix, low battery)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from orders.models import Order, OrderStatus
from tracking.models import Rider
from tracking.publish import rider_position_publish


@transaction.atomic
def rider_device_report(
    *,
    rider_user: AbstractBaseUser,
    location: str,
    battery_level: float | None = None,
    charging: bool | None = None,
) -> Rider:
    """Store the device's state on the rider and, after commit, show it on the ops map."""
    # The rider row is the lock every rider write takes first (see location_points_ingest).
    rider, _ = Rider.objects.select_for_update().get_or_create(
        user=rider_user, defaults={"display_name": rider_user.get_username()}
    )
    rider.device_location = location
    rider.device_battery_level = battery_level
    rider.device_charging = charging
    rider.device_reported_at = timezone.now()
    rider.save(update_fields=["device_location", "device_battery_level", "device_charging", "device_reported_at"])
    # Push is best effort and must not fail the write: group_send logs and swallows layer errors.
    username = rider_user.get_username()
    delivering = Order.objects.filter(rider=rider_user, status=OrderStatus.DELIVERING).count()
    transaction.on_commit(lambda: rider_position_publish(rider, username=username, delivering=delivering))
    return rider
