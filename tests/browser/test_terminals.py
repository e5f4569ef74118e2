"""The role terminals in real Chromium: the whole journey across three browsers, the rider's
offline queue, a denied location permission on the ops map, notifications arriving live.

They run against a Daphne of their own with a 1-second report interval
(RIDER_REPORT_SECONDS) and the ETA/alert jobs on, so the customer sees an ETA;
with REDIS_URL a Celery worker runs them, as in production.
"""

import datetime as dt
import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from playwright.sync_api import expect

from notifications.models import Notification
from orders.models import Order, OrderStatus
from tests.browser.conftest import DESKTOP, PHONE, PageWatch, RiderApp, in_thread
from tests.browser.test_order_page import RIDER_AT
from tests.conftest import PASSWORD, make_rider, make_user
from tests.live import LiveServer, start_daphne, stop
from tracking.models import EventKind, Rider, TrackingEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT_MS = 20000
REPORT_SECONDS = 1
# Customers see positions at 4 decimals, so the rider's points use exactly 4.
AT_WAREHOUSE = (31.1890, 121.4380)
HALFWAY = (31.1940, 121.4440)
NEAR_HOME = (31.1985, 121.4490)


@pytest.fixture(scope="module")
def terminal_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveServer]:
    logs = tmp_path_factory.mktemp("terminals")
    with django_db_blocker.unblock():
        server = start_daphne(
            logs,
            RIDER_REPORT_SECONDS=str(REPORT_SECONDS),
            TRACKING_JOBS_ENABLED="true",
            ETA_DEBOUNCE_SECONDS="1",
            THROTTLE_ANON="100000/min",
            THROTTLE_USER="100000/min",
            # The browser's rider jumps between three spots 700 m apart a second or two apart (its
            # geolocation is set, not driven): no speed limit here; tests/api/test_gps_quality.py tests it.
            GPS_MAX_SPEED_MPS="100000",
        )
    worker = None
    if settings.REDIS_URL:
        from tests.jobs.test_production import _purge_broker, start_worker

        _purge_broker()
        worker = start_worker(logs, "terminals", "--concurrency=1")
    yield server
    if worker is not None:
        from tests.jobs.test_production import stop_worker

        stop_worker(worker)
    stop(server.process)


@pytest.fixture
def terminal(browser) -> Iterator[Any]:
    """terminal(viewport, **context options) -> (context, PageWatch); asserts no console errors at the end."""
    contexts: list[Any] = []
    watches: list[PageWatch] = []

    def _open(viewport: dict[str, int] = PHONE, **options: Any) -> tuple[Any, PageWatch]:
        context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai", **options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        watch = PageWatch(context.new_page())
        watches.append(watch)
        return context, watch

    yield _open
    for context in contexts:
        context.close()
    errors = [error for watch in watches for error in watch.errors]
    assert errors == [], f"JavaScript errors in the browser: {errors}"


def sign_in(watch: PageWatch, base_url: str, username: str, next_path: str) -> None:
    page = watch.page
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def rider_near(page, point) -> None:
    page.wait_for_function(RIDER_AT, arg=list(point), timeout=WAIT_MS)


def api(base_url: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=20)
    token = client.post("/api/auth/token/", json={"username": username, "password": PASSWORD}).json()["access"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_journey_customer_orders_warehouse_dispatches_rider_delivers_live_on_every_screen(
    terminal_server, terminal, groups, warehouse, products, customer, operator
):
    base = terminal_server.url
    rider_user = make_rider("rider1", groups)

    # The warehouse and the rider are at work before the order exists: it must reach them live.
    _, desk = terminal(DESKTOP)
    sign_in(desk, base, "wally", "/warehouse/")
    expect(desk.page.locator("#wh-orders")).to_contain_text("暂无待处理订单")
    desk.page.evaluate("window.sameDocument = true")
    rider_context, phone = terminal(PHONE, geolocation=dict(zip(("latitude", "longitude"), AT_WAREHOUSE, strict=True)))
    rider_context.grant_permissions(["geolocation"])
    sign_in(phone, base, "rider1", "/rider/")
    expect(phone.page.locator("#rider-orders")).to_contain_text("暂无配送中的订单")
    phone.page.evaluate("window.sameDocument = true")

    # The customer: catalogue, quantities, the estimated total, address and a point on the map.
    _, shopper = terminal(PHONE)
    shop = shopper.page
    sign_in(shopper, base, "alice", "/shop/")
    shopper.screenshot("shop-empty-phone")
    shop.click('[data-sku="VEG-001"] .plus')
    shop.click('[data-sku="VEG-001"] .plus')
    shop.click('[data-sku="EGG-001"] .plus')
    expect(shop.locator("#cart-total")).to_have_text("¥19.88")  # 2 × 3.99 + 11.90
    expect(shop.locator("#place-order")).to_be_disabled()
    shop.fill("#address", "上海市徐汇区天钥桥路 1 号 3 室")
    shop.locator("#shop-map").click(position={"x": 300, "y": 60})
    expect(shop.locator("#picked-point")).to_contain_text("已选位置")
    expect(shop.locator("#place-order")).to_have_text("下单并支付 ¥19.88")
    shopper.screenshot("shop-cart-phone", full_page=True)
    shop.click("#place-order")
    shop.wait_for_url(re.compile(r"/orders/[0-9a-f]{32}/$"))
    order_id = shop.url.rstrip("/").rsplit("/", 1)[1]
    order = Order.objects.get(pk=order_id)
    assert (order.status, str(order.total_amount), order.user_id) == (OrderStatus.PAID, "19.88", customer.pk)
    expect(shop.locator("#status-pill")).to_have_text("仓库处理中")
    shop.wait_for_function("window.orderLive && window.orderLive.mode === 'live'", timeout=WAIT_MS)
    shop.evaluate("window.sameDocument = true")

    # The paid order appears on the warehouse screen by itself; one tap per stage.
    card = desk.page.locator(f'[data-order-id="{order_id}"]')
    expect(card).to_contain_text("待拣货")
    desk.screenshot("warehouse-new-order-desktop")
    for stage, label in (("picking", "拣货中"), ("picked", "拣货完成"), ("packed", "已打包")):
        card.locator(f'[data-action="{stage}"]').click()
        expect(card).to_have_attribute("data-stage", stage)
        expect(shop.locator(f'[data-step="{stage}"]')).to_have_class(re.compile(r"\bis-done\b"))
        expect(card.locator(".status-pill")).to_have_text(label)
    card.locator(".wh-rider").fill("rider1")
    desk.screenshot("warehouse-dispatch-desktop")
    card.locator('[data-action="dispatch"]').click()
    expect(card).to_have_count(0)
    expect(desk.page.locator("#toasts")).to_contain_text("已派给 骑手rider1")

    # The customer hears it (status, toast); the rider's list gets the order by itself.
    expect(shop.locator("#status-pill")).to_have_text("配送中")
    expect(shop.locator('.toast[data-kind="dispatched"]')).to_contain_text("骑手已出发")
    rider_card = phone.page.locator(f'[data-order-id="{order_id}"]')
    expect(rider_card).to_contain_text("天钥桥路 1 号 3 室")
    expect(phone.page.locator("#rider-map")).not_to_have_attribute("data-route-meters", "")

    # The rider moves; the customer's map follows, and the ETA is there.
    rider_near(shop, AT_WAREHOUSE)
    rider_context.set_geolocation(dict(zip(("latitude", "longitude"), HALFWAY, strict=True)))
    rider_near(shop, HALFWAY)
    rider_context.set_geolocation(dict(zip(("latitude", "longitude"), NEAR_HOME, strict=True)))
    rider_near(shop, NEAR_HOME)
    expect(shop.locator("#eta-main")).to_contain_text(re.compile(r"预计 \d\d:\d\d 送达"), timeout=30000)
    expect(phone.page.locator("#net-line")).to_contain_text("在线")
    shopper.screenshot("order-live-rider-moving-phone")
    phone.screenshot("rider-delivering-phone")

    # Delivered, with a confirmation, ends the order on every screen.
    rider_card.locator('[data-action="delivered"]').click()
    expect(rider_card.locator(".confirm-bar")).to_be_visible()
    phone.screenshot("rider-confirm-phone")
    rider_card.locator('[data-action="confirm-delivered"]').click()
    expect(rider_card).to_have_count(0)
    expect(phone.page.locator("#rider-orders")).to_contain_text("暂无配送中的订单")
    expect(shop.locator("#status-pill")).to_have_text("已送达")
    expect(shop.locator('.toast[data-kind="delivered"]')).to_contain_text("订单已送达")
    expect(shop.locator("#replay-offer")).to_be_visible()
    shopper.screenshot("order-delivered-phone")
    assert Order.objects.get(pk=order_id).status == OrderStatus.COMPLETED
    assert Order.objects.get(pk=order_id).rider_id == rider_user.pk
    for watch in (shopper, desk, phone):
        assert watch.page.evaluate("window.sameDocument") is True  # nothing reloaded

    shop.goto(f"{base}/orders/")
    expect(shop.locator(f'[data-order-id="{order_id}"]')).to_contain_text("已送达")


def test_rider_offline_queue_survives_a_reload_and_uploads_in_order_without_gaps(
    terminal_server, terminal, groups, make_order
):
    rider_user = make_rider("rider1", groups)
    order = in_thread(make_order, "delivering", assigned=rider_user)
    context, phone = terminal(PHONE, geolocation=dict(zip(("latitude", "longitude"), AT_WAREHOUSE, strict=True)))
    context.grant_permissions(["geolocation"])
    page = phone.page
    sign_in(phone, terminal_server.url, "rider1", "/rider/")
    expect(page.locator(f'[data-order-id="{order.id}"]')).to_be_visible()
    # The shell must be cached before the network goes.
    page.wait_for_function("window.riderApp && window.riderApp.serviceWorkerReady()", timeout=WAIT_MS)
    page.wait_for_function("window.riderApp.uploaded >= 2", timeout=WAIT_MS)

    context.set_offline(True)
    context.set_geolocation(dict(zip(("latitude", "longitude"), HALFWAY, strict=True)))
    page.wait_for_function("window.riderApp.waiting >= 3", timeout=WAIT_MS)
    expect(page.locator("#net-line")).to_contain_text(re.compile(r"离线，\d+ 个位置待上传"))
    phone.screenshot("rider-offline-phone")
    waiting_before_reload = page.evaluate("window.riderApp.waiting")

    page.reload()  # served by the service worker; the queue is in IndexedDB
    page.wait_for_function(f"window.riderApp && window.riderApp.waiting >= {waiting_before_reload}", timeout=WAIT_MS)
    context.set_geolocation(dict(zip(("latitude", "longitude"), NEAR_HOME, strict=True)))
    page.wait_for_function(f"window.riderApp.waiting >= {waiting_before_reload + 2}", timeout=WAIT_MS)
    expect(page.locator("#net-line")).to_contain_text("离线")
    expect(page.locator(f'[data-order-id="{order.id}"]')).to_be_visible()  # the last list, from the device
    phone.screenshot("rider-offline-after-reload-phone")
    offline_points = page.evaluate("window.riderApp.waiting")

    context.set_offline(False)
    page.wait_for_function("window.riderApp.waiting === 0", timeout=WAIT_MS)
    expect(page.locator("#net-line")).to_contain_text("在线")
    phone.screenshot("rider-back-online-phone")
    # The app keeps reporting each second: leave it, so the database and the trajectory hold the same points.
    page.goto("about:blank")
    page.wait_for_timeout(1500)

    events = list(
        TrackingEvent.objects.filter(order_id=order.id, kind=EventKind.LOCATION).order_by("recorded_at", "version")
    )
    client_ids = [event.client_id for event in events]
    assert len(client_ids) == len(set(client_ids))  # no duplicate
    assert len(events) >= offline_points + 2
    # Uploaded oldest first: version order is time order.
    assert [event.version for event in events] == sorted(event.version for event in events)
    positions = {(float(event.latitude), float(event.longitude)) for event in events}
    assert {AT_WAREHOUSE, HALFWAY, NEAR_HOME} <= positions
    # The customer's trajectory: every point, in time order, no gap beyond the reload.
    customer_api = api(terminal_server.url, "alice")
    line = next(
        feature
        for feature in customer_api.get(f"/api/orders/{order.id}/trajectory/").json()["features"]
        if feature["geometry"]["type"] == "LineString"
    )
    times = [dt.datetime.fromisoformat(value) for value in line["properties"]["times"]]
    assert len(times) == len(events)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert all(gap > 0 for gap in gaps)
    assert max(gaps) <= REPORT_SECONDS + 6
    customer_api.close()
    # While offline, the notification socket and the uploads failed as expected; nothing else may be logged.
    expected = ("net::ERR_INTERNET_DISCONNECTED", "ERR_INTERNET_DISCONNECTED")
    phone.errors[:] = [error for error in phone.errors if not any(text in error for text in expected)]


def test_denied_location_is_reported_and_shown_on_the_ops_map(terminal_server, terminal, groups, staff):
    rider_user = make_rider("rider1", groups)
    _, ops = terminal(DESKTOP)
    sign_in(ops, terminal_server.url, "sam", "/ops/map/")
    ops.page.wait_for_function("window.opsMap && window.opsMap.mode === 'live'", timeout=WAIT_MS)
    ops.page.wait_for_function(f"window.opsMap.riderIds().includes('{rider_user.pk}')", timeout=WAIT_MS)
    assert ops.page.evaluate(f"window.opsMap.riderDeviceReason({rider_user.pk})") == ""

    _, phone = terminal(PHONE)  # no geolocation permission granted
    sign_in(phone, terminal_server.url, "rider1", "/rider/")
    expect(phone.page.locator("#device-line")).to_contain_text("定位权限被拒绝")
    phone.screenshot("rider-location-denied-phone")

    ops.page.wait_for_function(
        f"window.opsMap.riderDeviceReason({rider_user.pk}) === '定位权限被拒绝'", timeout=WAIT_MS
    )
    expect(ops.page.locator(".rider-icon.is-dark .rider-name-tag")).to_contain_text("定位权限被拒绝")
    ops.page.evaluate(f"window.opsMap.selectRider({rider_user.pk})")
    expect(ops.page.locator(".leaflet-popup .device-reason")).to_contain_text("设备：定位权限被拒绝")
    ops.page.wait_for_timeout(400)  # the popup fades in
    ops.screenshot("ops-map-rider-denied-desktop")
    rider = Rider.objects.get(pk=rider_user.pk)
    assert (rider.device_location, rider.device_reported_at is not None) == ("denied", True)


def test_notifications_arrive_live_with_a_toast_and_mark_as_read(terminal_server, terminal, make_order, customer):
    order = in_thread(make_order, "packed")
    _, watch = terminal(PHONE)
    page = watch.page
    sign_in(watch, terminal_server.url, "alice", "/orders/")
    page.wait_for_function("window.xiaoxiangNotifications && window.xiaoxiangNotifications.mode === 'live'")
    unread = Notification.objects.filter(user=customer, read_at__isnull=True).count()
    expect(page.locator("#notif-count")).to_have_text(str(unread))
    page.evaluate("window.sameDocument = true")

    warehouse_api = api(terminal_server.url, "wally")
    response = warehouse_api.post(f"/api/warehouse/orders/{order.id}/dispatch/", json={"rider": "rita"})
    assert response.status_code == 200, response.text
    warehouse_api.close()

    expect(page.locator('.toast[data-kind="dispatched"]')).to_contain_text("骑手已出发")
    expect(page.locator("#notif-count")).to_have_text(str(unread + 1))
    expect(page.locator(f'[data-order-id="{order.id}"] .status-pill')).to_have_text("配送中")
    page.click("#notif-bell")
    item = page.locator('.notif-item[data-kind="dispatched"]')
    expect(item).to_have_class(re.compile(r"\bis-unread\b"))
    watch.screenshot("notifications-open-phone")
    item.locator(".notif-read").click()
    expect(page.locator("#notif-count")).to_have_text(str(unread))
    expect(item).not_to_have_class(re.compile(r"\bis-unread\b"))
    assert Notification.objects.get(user=customer, order=order, kind="order.dispatched").is_read is True

    # An order placed and paid elsewhere (the app) joins the list by itself.
    page.click("#notif-bell")
    expect(page.locator("#notif-panel")).to_be_hidden()
    app = api(terminal_server.url, "alice")
    body = {
        "items": [{"sku": "EGG-001", "quantity": 1}],
        "delivery_address": "上海市徐汇区天钥桥路 2 号",
        "delivery_lat": 31.2,
        "delivery_lon": 121.45,
    }
    placed = app.post("/api/orders/", json=body).json()
    assert app.post(f"/api/orders/{placed['id']}/pay/", json={}).status_code == 200
    app.close()
    expect(page.locator(f'[data-order-id="{placed["id"]}"] .status-pill')).to_have_text("仓库处理中")
    expect(page.locator("#order-count")).to_have_text("共 2 个订单")
    watch.screenshot("orders-live-new-order-phone")
    assert page.evaluate("window.sameDocument") is True


def test_admin_order_map_follows_the_order_socket_and_the_admin_speaks_chinese(
    terminal_server, terminal, make_order, rider
):
    make_user("boss", is_staff=True, is_superuser=True)
    order = in_thread(make_order, "delivering")
    phone = RiderApp(terminal_server.url, "rita")
    phone.report(*AT_WAREHOUSE)  # a one-point path when the page opens
    _, desk = terminal(DESKTOP)
    page = desk.page
    sign_in(desk, terminal_server.url, "boss", f"/admin/orders/order/{order.id}/change/")
    expect(page.locator("#order-track")).to_have_attribute("data-live", "live")
    expect(page.locator("#track-summary")).to_have_text("轨迹点 1 个。")
    expect(page.locator("body")).to_contain_text("承诺送达时间")  # field names in Chinese
    page.evaluate("window.sameDocument = true")

    for lat, lon in (HALFWAY, NEAR_HOME):
        phone.report(lat, lon)
    expect(page.locator("#order-track")).to_have_attribute("data-path-length", "3")
    expect(page.locator("#track-summary")).to_have_text("轨迹点 3 个。")
    phone.delivered(order.id)
    expect(page.locator("#track-timeline")).to_contain_text("已送达")
    phone.close()
    desk.screenshot("admin-order-live-desktop", full_page=True)
    assert page.evaluate("window.sameDocument") is True


def test_rider_app_is_installable_by_chromiums_own_check(browser, daphne_server, rider, tmp_path):
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    # Installability needs a profile of its own (Chromium refuses it in incognito contexts).
    context = browser.browser_type.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
    )
    try:
        page = context.new_page()
        page.goto(f"{daphne_server.url}/accounts/login/?next=/rider/")
        page.fill("input[name=username]", "rita")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/rider/"))
        page.wait_for_function("navigator.serviceWorker.getRegistrations().then((all) => all.length === 1)")
        cdp = context.new_cdp_session(page)
        assert cdp.send("Page.getAppManifest")["errors"] == []
        assert cdp.send("Page.getInstallabilityErrors") == {"installabilityErrors": []}
    finally:
        context.close()
