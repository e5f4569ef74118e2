from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from xiaoxiang.crypto import EncryptedFloatField, EncryptedTextField
from xiaoxiang.geo import geohash_encode
from xiaoxiang.ids import new_id


class OrderStatus(models.IntegerChoices):
    PENDING_PAYMENT = 1, "待支付"
    PAID = 2, "已支付"
    DELIVERING = 3, "配送中"
    COMPLETED = 4, "已完成"
    CANCELLED = 5, "已取消"


STATUS_NAMES = {
    OrderStatus.PENDING_PAYMENT: "pending_payment",
    OrderStatus.PAID: "paid",
    OrderStatus.DELIVERING: "delivering",
    OrderStatus.COMPLETED: "completed",
    OrderStatus.CANCELLED: "cancelled",
}


class Stage(models.TextChoices):
    """Warehouse picking stages, in the order they happen."""

    PICKING = "picking", "拣货中"
    PICKED = "picked", "拣货完成"
    PACKED = "packed", "已打包"


STAGE_ORDER = [Stage.PICKING, Stage.PICKED, Stage.PACKED]


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))])
    unit = models.CharField(max_length=20, default="份")
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "products"
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Warehouse(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    address = models.CharField(max_length=255, blank=True)
    latitude = models.DecimalField(max_digits=10, decimal_places=6)
    longitude = models.DecimalField(max_digits=10, decimal_places=6)
    geohash = models.CharField(max_length=12, db_index=True, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "warehouses"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # Derived index column, kept in step with the coordinates.
        self.geohash = geohash_encode(float(self.latitude), float(self.longitude))
        super().save(*args, **kwargs)


class WarehouseOperator(models.Model):
    """Links a user of the `warehouse` group to the warehouse they work in."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="warehouse_operator")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="operators")

    class Meta:
        db_table = "warehouse_operators"

    def __str__(self) -> str:
        return f"{self.user} @ {self.warehouse}"


class Order(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    status = models.PositiveSmallIntegerField(choices=OrderStatus.choices, default=OrderStatus.PENDING_PAYMENT)
    total_amount = models.DecimalField(max_digits=10, decimal_places=2)
    create_time = models.DateTimeField(auto_now_add=True, db_index=True)
    update_time = models.DateTimeField(auto_now=True)

    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="orders")
    rider = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="rider_orders",
    )
    stage = models.CharField(max_length=16, choices=Stage.choices, blank=True)
    delivery_address = EncryptedTextField()
    delivery_lat = EncryptedFloatField()
    delivery_lon = EncryptedFloatField()
    promised_at = models.DateTimeField()
    eta = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # +1 on every change of the order or its tracking; the order's events carry it.
    version = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "orders"
        ordering = ["-create_time"]
        indexes = [
            models.Index(fields=["user", "-create_time"]),
            models.Index(fields=["warehouse", "status"]),
            models.Index(fields=["rider", "status"]),
            models.Index(fields=["status", "promised_at"]),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[OrderStatus(self.status)]


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    # Copied at order time: later catalogue changes never rewrite an order.
    sku = models.CharField(max_length=32)
    name = models.CharField(max_length=100)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    line_total = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        db_table = "order_items"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.sku} x{self.quantity}"
