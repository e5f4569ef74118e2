"""Blocked client addresses and networks (issue 12): managed by staff in the admin, plus automatic bans."""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

# The reason of the bans access.services makes by itself (too many 401/429 answers).
AUTO_BAN_REASON = "auto"


def network_normalize(value: str) -> str:
    """The canonical form of an address or CIDR range ("203.0.113.7" → "203.0.113.7/32"); ValidationError if neither."""
    try:
        return str(ipaddress.ip_network((value or "").strip(), strict=False))
    except ValueError:
        raise ValidationError(
            "Enter an IPv4 or IPv6 address or a CIDR range, e.g. 203.0.113.7 or 203.0.113.0/24.", code="invalid"
        ) from None


class BlockedNetwork(models.Model):
    network = models.CharField(
        "地址或网段",
        max_length=49,
        validators=[network_normalize],
        help_text="An address (203.0.113.7) or a CIDR range (203.0.113.0/24, 2001:db8::/32).",
    )
    reason = models.CharField("原因", max_length=200, help_text=f'"{AUTO_BAN_REASON}" for automatic bans.')
    expires_at = models.DateTimeField("到期时间", null=True, blank=True, help_text="Empty: blocked until removed.")
    created_at = models.DateTimeField("创建时间", default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False, related_name="+"
    )

    class Meta:
        db_table = "access_blocked_network"
        verbose_name = "封禁地址"
        verbose_name_plural = "封禁地址"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["expires_at"], name="access_blocked_expires")]

    def __str__(self) -> str:
        return self.network

    def save(self, *args, **kwargs) -> None:
        self.network = network_normalize(self.network)
        super().save(*args, **kwargs)

    @property
    def active(self) -> bool:
        return self.expires_at is None or self.expires_at > timezone.now()
