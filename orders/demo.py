"""Demo data (seed_demo): a catalogue, a warehouse and one account per role."""

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction

from orders.models import Product, Warehouse, WarehouseOperator
from tracking.models import Rider
from xiaoxiang.geo import geohash_encode

DEFAULT_PASSWORD = "xiaoxiang-demo"  # noqa: S105  (the documented demo password)
ROLE_GROUPS = ("customer", "rider", "warehouse")

# Xuhui, Shanghai: the demo warehouse and where riders wait.
WAREHOUSE = {
    "code": "SH-XH-01",
    "name": "小象买菜 徐汇仓",
    "address": "上海市徐汇区漕溪北路 88 号",
    "lat": "31.188000",
    "lon": "121.437000",
}

CATALOGUE = [
    ("VEG-001", "上海青 500g", "3.99", "袋"),
    ("VEG-002", "西红柿 500g", "5.49", "袋"),
    ("VEG-003", "黄瓜 2 根", "3.29", "份"),
    ("VEG-004", "土豆 1kg", "4.99", "袋"),
    ("FRU-001", "香蕉 1 把", "6.90", "把"),
    ("FRU-002", "红富士苹果 4 个", "12.80", "份"),
    ("MEA-001", "五花肉 300g", "18.90", "盒"),
    ("MEA-002", "鸡胸肉 500g", "15.90", "盒"),
    ("SEA-001", "基围虾 250g", "29.90", "盒"),
    ("EGG-001", "鲜鸡蛋 10 枚", "11.90", "盒"),
    ("DAI-001", "鲜牛奶 950ml", "13.50", "瓶"),
    ("TOF-001", "嫩豆腐 400g", "2.99", "盒"),
]


def _user(username: str, password: str, *, group: Group | None = None, **fields) -> AbstractBaseUser:
    User = get_user_model()
    user, _ = User.objects.update_or_create(username=username, defaults=fields)
    user.set_password(password)
    user.save()
    if group is not None:
        user.groups.add(group)
    return user


@transaction.atomic
def demo_seed(*, riders: int, customers: int, password: str) -> dict[str, list[str]]:
    """Create or refresh the demo data; running it twice changes nothing but passwords."""
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_GROUPS}
    for sku, name, price, unit in CATALOGUE:
        Product.objects.update_or_create(sku=sku, defaults={"name": name, "price": Decimal(price), "unit": unit})
    warehouse, _ = Warehouse.objects.get_or_create(
        code=WAREHOUSE["code"],
        defaults={
            "name": WAREHOUSE["name"],
            "address": WAREHOUSE["address"],
            "latitude": Decimal(WAREHOUSE["lat"]),
            "longitude": Decimal(WAREHOUSE["lon"]),
        },
    )
    accounts: dict[str, list[str]] = {"staff": [], "warehouse": [], "rider": [], "customer": []}
    _user("admin", password, is_staff=True, is_superuser=True, email="admin@xiaoxiang.example")
    accounts["staff"].append("admin")
    operator = _user("warehouse1", password, group=groups["warehouse"], email="warehouse1@xiaoxiang.example")
    WarehouseOperator.objects.update_or_create(user=operator, defaults={"warehouse": warehouse})
    accounts["warehouse"].append("warehouse1")
    lat, lon = float(warehouse.latitude), float(warehouse.longitude)
    for number in range(1, riders + 1):
        user = _user(f"rider{number}", password, group=groups["rider"], email=f"rider{number}@xiaoxiang.example")
        # Riders start around the warehouse, a few hundred metres apart.
        rider_lat, rider_lon = lat + 0.002 * number, lon - 0.001 * number
        Rider.objects.get_or_create(
            user=user,
            defaults={
                "display_name": f"骑手{number}号",
                "phone": f"1380000{number:04d}",
                "last_lat": rider_lat,
                "last_lon": rider_lon,
                "geohash": geohash_encode(rider_lat, rider_lon),
            },
        )
        accounts["rider"].append(user.username)
    for number in range(1, customers + 1):
        user = _user(
            f"customer{number}", password, group=groups["customer"], email=f"customer{number}@xiaoxiang.example"
        )
        accounts["customer"].append(user.username)
    return accounts
