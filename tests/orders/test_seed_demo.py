import io

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command

from orders.models import Product, Warehouse, WarehouseOperator
from tracking.models import Rider

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, ...]:
    return (
        User.objects.count(),
        Product.objects.count(),
        Warehouse.objects.count(),
        Rider.objects.count(),
        WarehouseOperator.objects.count(),
    )


def test_seed_demo_is_idempotent_and_prints_the_password():
    out = io.StringIO()
    call_command("seed_demo", "--riders", "2", "--customers", "2", "--password", "pw-demo-123", stdout=out)
    first = _counts()
    call_command("seed_demo", "--riders", "2", "--customers", "2", "--password", "pw-demo-123", stdout=io.StringIO())
    assert _counts() == first == (6, 12, 1, 2, 1)
    assert "pw-demo-123" in out.getvalue()
    assert "rider1, rider2" in out.getvalue()
    admin = authenticate(username="admin", password="pw-demo-123")
    assert admin is not None and admin.is_staff and admin.is_superuser
    assert set(User.objects.get(username="rider2").groups.values_list("name", flat=True)) == {"rider"}
    assert set(User.objects.get(username="customer1").groups.values_list("name", flat=True)) == {"customer"}
    assert WarehouseOperator.objects.get(user__username="warehouse1").warehouse.code == "SH-XH-01"


def test_seed_demo_defaults():
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "xiaoxiang-demo" in out.getvalue()
    assert sorted(User.objects.values_list("username", flat=True)) == [
        "admin", "customer1", "customer2", "customer3", "rider1", "rider2", "rider3", "warehouse1",
    ]  # fmt: skip
