"""Delivery address and coordinates are encrypted at rest; keys rotate."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from orders.models import Order

pytestmark = pytest.mark.django_db


def _raw(order_id: str) -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT delivery_address, delivery_lat, delivery_lon FROM orders WHERE id = %s", [order_id])
        return cursor.fetchone()


def test_raw_table_holds_ciphertext_and_model_reads_plaintext(make_order):
    order = make_order("pending")
    address, lat, lon = _raw(order.id)
    assert "天钥桥路" not in address and "31.2" not in lat and "121.45" not in lon
    assert address.startswith("gAAAAA")  # a Fernet token
    fresh = Order.objects.get(pk=order.id)
    assert fresh.delivery_address == "上海市徐汇区天钥桥路 1 号 3 室"
    assert (fresh.delivery_lat, fresh.delivery_lon) == (31.2, 121.45)


def test_rotation_re_encrypts_under_the_newest_key(make_order, settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    order = make_order("paid")
    before = _raw(order.id)
    version = order.version

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert Order.objects.get(pk=order.id).delivery_address == "上海市徐汇区天钥桥路 1 号 3 室"
    call_command("rotate_field_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    after = _raw(order.id)
    assert all(a != b for a, b in zip(before, after, strict=True))
    assert Fernet(new_key.encode()).decrypt(after[0].encode()).decode() == "上海市徐汇区天钥桥路 1 号 3 室"

    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is retired
    fresh = Order.objects.get(pk=order.id)
    assert (fresh.delivery_address, fresh.delivery_lat, fresh.version) == (
        "上海市徐汇区天钥桥路 1 号 3 室",
        31.2,
        version,
    )


def test_unknown_key_fails_loudly(make_order, settings):
    order = make_order("pending")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ValueError, match="FIELD_ENCRYPTION_KEYS"):
        Order.objects.get(pk=order.id)
