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
    sku = models.CharField(verbose_name="商品编码", max_length=32, unique=True)
    name = models.CharField(verbose_name="名称", max_length=100)
    price = models.DecimalField(
        verbose_name="单价", max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    unit = models.CharField(verbose_name="单位", max_length=20, default="份")
    active = models.BooleanField(verbose_name="在售", default=True)

    class Meta:
        verbose_name = "商品"
        verbose_name_plural = "商品"
        db_table = "products"
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Warehouse(models.Model):
    code = models.CharField(verbose_name="仓库编码", max_length=32, unique=True)
    name = models.CharField(verbose_name="名称", max_length=100)
    address = models.CharField(verbose_name="地址", max_length=255, blank=True)
    latitude = models.DecimalField(verbose_name="纬度", max_digits=10, decimal_places=6)
    longitude = models.DecimalField(verbose_name="经度", max_digits=10, decimal_places=6)
    geohash = models.CharField(verbose_name="地理哈希", max_length=12, db_index=True, blank=True)
    active = models.BooleanField(verbose_name="营业中", default=True)

    class Meta:
        verbose_name = "仓库"
        verbose_name_plural = "仓库"
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

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, verbose_name="用户", on_delete=models.CASCADE, related_name="warehouse_operator"
    )
    warehouse = models.ForeignKey(Warehouse, verbose_name="仓库", on_delete=models.CASCADE, related_name="operators")

    class Meta:
        verbose_name = "仓库操作员"
        verbose_name_plural = "仓库操作员"
        db_table = "warehouse_operators"

    def __str__(self) -> str:
        return f"{self.user} @ {self.warehouse}"


class Order(models.Model):
    id = models.CharField(verbose_name="订单编号", primary_key=True, max_length=32, default=new_id, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="顾客", on_delete=models.PROTECT, related_name="orders"
    )
    status = models.PositiveSmallIntegerField(
        verbose_name="状态", choices=OrderStatus.choices, default=OrderStatus.PENDING_PAYMENT
    )
    total_amount = models.DecimalField(verbose_name="订单金额", max_digits=10, decimal_places=2)
    create_time = models.DateTimeField(verbose_name="下单时间", auto_now_add=True, db_index=True)
    update_time = models.DateTimeField(verbose_name="更新时间", auto_now=True)

    warehouse = models.ForeignKey(Warehouse, verbose_name="发货仓库", on_delete=models.PROTECT, related_name="orders")
    rider = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="骑手",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="rider_orders",
    )
    stage = models.CharField(verbose_name="仓库阶段", max_length=16, choices=Stage.choices, blank=True)
    delivery_address = EncryptedTextField(verbose_name="收货地址")
    delivery_lat = EncryptedFloatField(verbose_name="收货纬度")
    delivery_lon = EncryptedFloatField(verbose_name="收货经度")
    promised_at = models.DateTimeField(verbose_name="承诺送达时间")
    eta = models.DateTimeField(verbose_name="预计送达时间", null=True, blank=True)
    paid_at = models.DateTimeField(verbose_name="支付时间", null=True, blank=True)
    dispatched_at = models.DateTimeField(verbose_name="派单时间", null=True, blank=True)
    delivered_at = models.DateTimeField(verbose_name="送达时间", null=True, blank=True)
    cancelled_at = models.DateTimeField(verbose_name="取消时间", null=True, blank=True)
    # +1 on every change of the order or its tracking; the order's events carry it.
    version = models.PositiveIntegerField(verbose_name="版本", default=1)

    class Meta:
        verbose_name = "订单"
        verbose_name_plural = "订单"
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
    order = models.ForeignKey(Order, verbose_name="订单", on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, verbose_name="商品", on_delete=models.PROTECT, related_name="+")
    # Copied at order time: later catalogue changes never rewrite an order.
    sku = models.CharField(verbose_name="商品编码", max_length=32)
    name = models.CharField(verbose_name="名称", max_length=100)
    unit_price = models.DecimalField(verbose_name="单价", max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField(verbose_name="数量", validators=[MinValueValidator(1)])
    line_total = models.DecimalField(verbose_name="小计", max_digits=10, decimal_places=2)

    class Meta:
        verbose_name = "订单商品"
        verbose_name_plural = "订单商品"
        db_table = "order_items"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.sku} x{self.quantity}"
