from django.conf import settings
from django.db import models


class Notification(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name="用户", on_delete=models.CASCADE, related_name="notifications"
    )
    order = models.ForeignKey(
        "orders.Order",
        verbose_name="订单",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notifications",
    )
    kind = models.CharField(verbose_name="类型", max_length=32)
    title = models.CharField(verbose_name="标题", max_length=120)
    body = models.TextField(verbose_name="内容", blank=True)
    created_at = models.DateTimeField(verbose_name="时间", auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(verbose_name="已读时间", null=True, blank=True)

    class Meta:
        verbose_name = "通知"
        verbose_name_plural = "通知"
        db_table = "notifications"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="notificatio_user_id_c59dd1_idx")]

    def __str__(self) -> str:
        return f"{self.user}: {self.title}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None
