"""The page views through Django's test client: access rules and what the templates render."""

import json
import re

import pytest
from django.test import Client

from tests.conftest import PASSWORD, make_user
from tracking.models import Alert, AlertKind


def logged_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def embedded_snapshot(html: str) -> dict:
    match = re.search(r'<script id="order-snapshot" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page embeds the order snapshot"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_login_page_has_username_and_password_fields():
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert "登录" in html


@pytest.mark.django_db
def test_login_redirects_to_my_orders(customer):
    response = Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/orders/"


@pytest.mark.django_db
def test_logout_is_a_post_and_ends_the_session(customer):
    client = logged_in(customer)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/orders/")["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/orders/", "/orders/0123456789abcdef0123456789abcdef/"])
def test_pages_need_login(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.django_db
def test_my_orders_lists_only_mine_with_chinese_status(make_order, other_customer):
    mine = [make_order("pending"), make_order("paid"), make_order("delivering"), make_order("cancelled")]
    theirs = make_order("paid", owner=other_customer)
    html = logged_in(mine[0].user).get("/orders/").content.decode()
    for order in mine:
        assert f'data-order-id="{order.id}"' in html
    assert theirs.id not in html
    for label in ("待支付", "仓库处理中", "配送中", "已取消"):
        assert label in html
    assert "共 4 个订单" in html


@pytest.mark.django_db
def test_completed_order_reads_delivered(make_order):
    order = make_order("completed")
    html = logged_in(order.user).get("/orders/").content.decode()
    assert "已送达" in html


@pytest.mark.django_db
def test_order_page_embeds_the_customer_view_of_the_snapshot(make_order):
    order = make_order("delivering")
    response = logged_in(order.user).get(f"/orders/{order.id}/")
    assert response.status_code == 200
    html = response.content.decode()
    snapshot = embedded_snapshot(html)
    assert snapshot["id"] == order.id
    assert snapshot["version"] == order.version
    assert snapshot["status"] == 3
    assert "alerts" not in snapshot
    assert set(snapshot["rider"]) == {"name"}
    assert "vendor/leaflet/leaflet.js" in html
    assert "js/order-live.js" in html
    assert "//unpkg.com" not in html and "cdn" not in html.lower()


@pytest.mark.django_db
def test_another_customers_order_is_404(make_order, other_customer):
    order = make_order("delivering")
    response = logged_in(other_customer).get(f"/orders/{order.id}/")
    assert response.status_code == 404
    assert order.id not in response.content.decode()


@pytest.mark.django_db
def test_unknown_order_is_404(customer):
    assert logged_in(customer).get("/orders/0123456789abcdef0123456789abcdef/").status_code == 404


@pytest.mark.django_db
def test_staff_sees_alerts_in_the_embedded_snapshot(make_order, staff):
    order = make_order("delivering")
    Alert.objects.create(order=order, rider=order.rider, kind=AlertKind.LATE, message="可能超时")
    snapshot = embedded_snapshot(logged_in(staff).get(f"/orders/{order.id}/").content.decode())
    assert [alert["message"] for alert in snapshot["alerts"]] == ["可能超时"]


@pytest.mark.django_db
def test_ops_map_is_for_staff_only(customer, staff):
    assert logged_in(customer).get("/ops/map/")["Location"].startswith("/admin/login/")
    response = logged_in(staff).get("/ops/map/")
    assert response.status_code == 200
    assert "js/ops-map.js" in response.content.decode()


@pytest.mark.django_db
def test_ops_state_json_is_staff_only(customer):
    assert Client().get("/ops/map/state/").status_code == 401
    assert logged_in(customer).get("/ops/map/state/").status_code == 403
    assert logged_in(customer).get("/ops/riders/1/orders/").status_code == 403


@pytest.mark.django_db
def test_ops_state_lists_active_riders_and_open_alerts(make_order, rider, other_rider, staff):
    order = make_order("delivering")
    alert = Alert.objects.create(order=order, rider=rider, kind=AlertKind.STALL, message="停滞")
    Alert.objects.create(order=order, rider=rider, kind=AlertKind.LATE, message="旧的", resolved_at=order.create_time)
    state = logged_in(staff).get("/ops/map/state/").json()
    riders = {entry["username"]: entry for entry in state["riders"]}
    assert set(riders) == {"rita", "ravi"}
    assert riders["rita"]["delivering"] == 1
    assert riders["ravi"]["delivering"] == 0
    assert [(entry["id"], entry["order"], entry["rider"]) for entry in state["alerts"]] == [
        (alert.id, order.id, rider.pk)
    ]
    assert state["alerts"][0]["lat"] == rider.rider_profile.last_lat


@pytest.mark.django_db
def test_ops_rider_orders_lists_the_riders_orders(make_order, rider, staff):
    delivering = make_order("delivering")
    done = make_order("completed")
    make_order("paid")
    data = logged_in(staff).get(f"/ops/riders/{rider.pk}/orders/").json()
    assert [entry["id"] for entry in data["orders"]] == [delivering.id, done.id]
    assert data["orders"][0]["admin_url"] == f"/admin/orders/order/{delivering.id}/change/"


@pytest.mark.django_db
def test_admin_index_links_the_ops_map_and_order_page_has_the_track(make_order):
    admin_user = make_user("boss", is_staff=True, is_superuser=True)
    order = make_order("delivering")
    client = logged_in(admin_user)
    assert 'href="/ops/map/"' in client.get("/admin/").content.decode()
    html = client.get(f"/admin/orders/order/{order.id}/change/").content.decode()
    assert f'data-order-id="{order.id}"' in html
    assert "js/admin-order-map.js" in html


@pytest.mark.django_db
def test_wrong_password_says_so_in_chinese(customer):
    response = Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "用户名或密码不正确" in response.content.decode()


@pytest.mark.django_db
def test_order_page_passes_the_tile_url_to_the_map(make_order, settings):
    settings.MAP_TILE_URL = "https://tiles.example/{z}/{x}/{y}.png"
    order = make_order("paid")
    html = logged_in(order.user).get(f"/orders/{order.id}/").content.decode()
    config = json.loads(re.search(r'<script id="order-config" type="application/json">(.*?)</script>', html).group(1))
    assert config == {"orderId": order.id, "role": "customer", "tileUrl": "https://tiles.example/{z}/{x}/{y}.png"}
