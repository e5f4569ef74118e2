from django.conf import settings
from django.db import models
from django.db.models import Q

from orders.models import Order, OrderStatus, Stage
from xiaoxiang.ids import new_id


class EventKind(models.TextChoices):
    STATUS = "status", "状态"
    STAGE = "stage", "仓库阶段"
    LOCATION = "location", "位置"
    ETA = "eta", "预计送达"
    ALERT = "alert", "预警"


class OperatorType(models.IntegerChoices):
    RIDER = 1, "骑手"
    WAREHOUSE = 2, "仓库"
    CUSTOMER = 3, "顾客"
    STAFF = 4, "客服"
    SYSTEM = 5, "系统"


class OrderCreatedAtField(models.DateTimeField):
    """The order's own creation time, copied onto each of its events when they are saved.

    It is order_tracking's partition key on PostgreSQL (docs/data.md): the same
    for every event of an order, so all of an order's events share one
    partition and the unique keys that must include it still mean "per order".
    Filled in pre_save, which Django runs for save() and bulk_create() alike.
    """

    def pre_save(self, model_instance: models.Model, add: bool) -> object:
        value = getattr(model_instance, self.attname)
        if value is None:
            value = model_instance.order.create_time
            setattr(model_instance, self.attname, value)
        return value


# Location events fit to be a position: the live position, the ETA and the alerts read only these. A point
# the GPS quality rule flagged (tracking/quality.py) stays in the history, not here.
POSITION = Q(kind=EventKind.LOCATION, quality_flags="")


class TrackingEventQuerySet(models.QuerySet):
    def for_order(self, order: Order) -> "TrackingEventQuerySet":
        """One order's events; the partition key beside the order id lets PostgreSQL read one partition."""
        return self.filter(order=order, order_created_at=order.create_time)

    def positions(self) -> "TrackingEventQuerySet":
        """The location events fit to be a position (POSITION)."""
        return self.filter(POSITION)


class TrackingEvent(models.Model):
    """One change of an order: a status, a stage, a GPS point, an ETA or an alert.

    `version` is the order version this event produced, unique per order, so
    a client that has seen version N asks for events with version > N.
    """

    id = models.CharField(verbose_name="事件编号", primary_key=True, max_length=32, default=new_id, editable=False)
    order = models.ForeignKey(
        Order, verbose_name="订单", on_delete=models.CASCADE, related_name="tracking_events", db_column="order_id"
    )
    status = models.PositiveSmallIntegerField(verbose_name="订单状态", choices=OrderStatus.choices)
    longitude = models.DecimalField(verbose_name="经度", max_digits=10, decimal_places=6, null=True, blank=True)
    latitude = models.DecimalField(verbose_name="纬度", max_digits=10, decimal_places=6, null=True, blank=True)
    address = models.CharField(verbose_name="地址", max_length=255, blank=True)
    operator_id = models.CharField(verbose_name="操作人", max_length=32, blank=True)
    operator_type = models.PositiveSmallIntegerField(
        verbose_name="操作人类型", choices=OperatorType.choices, null=True, blank=True
    )
    create_time = models.DateTimeField(verbose_name="写入时间", auto_now_add=True)
    order_created_at = OrderCreatedAtField(verbose_name="订单创建时间", editable=False)

    kind = models.CharField(verbose_name="类型", max_length=16, choices=EventKind.choices)
    stage = models.CharField(verbose_name="仓库阶段", max_length=16, choices=Stage.choices, blank=True)
    recorded_at = models.DateTimeField(verbose_name="发生时间")
    version = models.PositiveIntegerField(verbose_name="版本")
    geohash = models.CharField(verbose_name="地理哈希", max_length=12, blank=True)
    client_id = models.CharField(verbose_name="客户端编号", max_length=64, null=True, blank=True)
    accuracy = models.FloatField(verbose_name="定位精度（米）", null=True, blank=True)
    speed = models.FloatField(verbose_name="速度（米/秒）", null=True, blank=True)
    heading = models.FloatField(verbose_name="方向（度）", null=True, blank=True)
    # Why a location event is not trusted as a position (tracking/quality.py), comma-separated; '' when fine.
    # The database default too: raw inserts (retention's copy back) need not name it.
    quality_flags = models.CharField(verbose_name="定位质量标记", max_length=32, blank=True, default="", db_default="")
    data = models.JSONField(verbose_name="数据", default=dict, blank=True)

    objects = TrackingEventQuerySet.as_manager()

    class Meta:
        verbose_name = "追踪事件"
        verbose_name_plural = "追踪事件"
        db_table = "order_tracking"
        ordering = ["order", "version"]
        constraints = [
            # order_created_at is constant per order (the partition key must be
            # in every unique key on PostgreSQL): these still mean "per order".
            models.UniqueConstraint(
                fields=["order", "version", "order_created_at"], name="order_tracking_unique_version"
            ),
            # Re-uploads of the same point are no-ops (client_id is per rider
            # app and each order has one rider), in any partition.
            models.UniqueConstraint(
                fields=["order", "client_id", "order_created_at"],
                condition=Q(client_id__isnull=False),
                name="order_tracking_unique_client_id",
            ),
        ]
        indexes = [
            models.Index(fields=["order", "kind", "recorded_at"], name="order_tracking_kind_time"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} v{self.version} {self.kind}"


class DeviceLocation(models.TextChoices):
    OK = "ok", "定位正常"
    DENIED = "denied", "定位权限被拒绝"
    UNAVAILABLE = "unavailable", "无法定位"


LOW_BATTERY_LEVEL = 0.2


class Rider(models.Model):
    """A rider's profile, online state and last known position."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name="用户",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="rider_profile",
    )
    display_name = models.CharField(verbose_name="显示名", max_length=50)
    phone = models.CharField(verbose_name="电话", max_length=32, blank=True)
    online = models.BooleanField(verbose_name="在线", default=True)
    last_lat = models.FloatField(verbose_name="最后纬度", null=True, blank=True)
    last_lon = models.FloatField(verbose_name="最后经度", null=True, blank=True)
    last_recorded_at = models.DateTimeField(verbose_name="最后定位时间", null=True, blank=True)
    last_seen_at = models.DateTimeField(verbose_name="最后联系时间", null=True, blank=True)
    geohash = models.CharField(verbose_name="地理哈希", max_length=12, blank=True, db_index=True)
    # What the rider's device last said about itself (POST /api/rider/status/): why a rider may be dark.
    device_location = models.CharField(
        verbose_name="设备定位状态", max_length=16, choices=DeviceLocation.choices, blank=True
    )
    device_battery_level = models.FloatField(verbose_name="设备电量", null=True, blank=True)
    device_charging = models.BooleanField(verbose_name="设备充电中", null=True, blank=True)
    device_reported_at = models.DateTimeField(verbose_name="设备上报时间", null=True, blank=True)

    class Meta:
        verbose_name = "骑手"
        verbose_name_plural = "骑手"
        db_table = "riders"
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name

    def device_state(self) -> dict | None:
        """The device report as the ops map shows it, with a reason in words; None before any report."""
        if self.device_reported_at is None:
            return None
        reasons = []
        if self.device_location and self.device_location != DeviceLocation.OK:
            reasons.append(DeviceLocation(self.device_location).label)
        level = self.device_battery_level
        if level is not None and level < LOW_BATTERY_LEVEL and not self.device_charging:
            reasons.append(f"电量低（{round(level * 100)}%）")
        return {
            "location": self.device_location or None,
            "battery_level": level,
            "charging": self.device_charging,
            "reported_at": self.device_reported_at.isoformat(),
            "reason": "，".join(reasons),
        }


class AlertKind(models.TextChoices):
    STALL = "stall", "骑手停滞"
    DEVIATION = "deviation", "偏离路线"
    LATE = "late", "配送超时"
    OFFLINE = "offline", "骑手离线"


class Alert(models.Model):
    order = models.ForeignKey(Order, verbose_name="订单", on_delete=models.CASCADE, related_name="alerts")
    rider = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="骑手", on_delete=models.SET_NULL, null=True, blank=True
    )
    kind = models.CharField(verbose_name="类型", max_length=16, choices=AlertKind.choices)
    message = models.CharField(verbose_name="说明", max_length=255)
    data = models.JSONField(verbose_name="数据", default=dict, blank=True)
    opened_at = models.DateTimeField(verbose_name="发生时间", auto_now_add=True)
    resolved_at = models.DateTimeField(verbose_name="解除时间", null=True, blank=True)

    class Meta:
        verbose_name = "预警"
        verbose_name_plural = "预警"
        db_table = "alerts"
        ordering = ["-opened_at"]
        constraints = [
            # At most one open alert per order and kind: the insert is the claim.
            models.UniqueConstraint(
                fields=["order", "kind"], condition=Q(resolved_at__isnull=True), name="alerts_one_open_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.order_id}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class EtaFit(models.Model):
    """One fit of the ETA model (tracking/eta.py); the newest row is the model in use."""

    fitted_at = models.DateTimeField(verbose_name="拟合时间", db_index=True)
    deliveries = models.PositiveIntegerField(verbose_name="配送单数")
    samples = models.PositiveIntegerField(verbose_name="样本数")
    params = models.JSONField(verbose_name="参数")

    class Meta:
        verbose_name = "ETA 模型"
        verbose_name_plural = "ETA 模型"
        db_table = "eta_fits"
        ordering = ["-fitted_at", "-id"]

    def __str__(self) -> str:
        return f"ETA fit {self.fitted_at:%Y-%m-%d %H:%M} ({self.deliveries} deliveries)"
