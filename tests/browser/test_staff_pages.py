"""Staff in real Chromium: the live operations map and the admin order page's trajectory."""

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, PHONE, in_thread, log_in
from tests.conftest import make_user
from tracking.alert_services import alert_open, alert_resolve
from tracking.alerts import Finding
from tracking.models import Alert, AlertKind

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT_MS = 20000
# Pushed at once with Redis; in the embedded default the test process cannot reach the server's
# in-memory layer, and the map's periodic state read (30 s) brings the change instead.
PUSH_OR_REFRESH_MS = 40000
RIDER_AT = """([id, lat, lon]) => {
  const at = window.opsMap && window.opsMap.riderLatLng(id);
  return Boolean(at) && Math.abs(at[0] - lat) < 1e-6 && Math.abs(at[1] - lon) < 1e-6;
}"""


def test_ops_map_moves_riders_live_and_lists_alerts(daphne_server, open_page, rider_app, make_order, rider):
    make_user("boss", is_staff=True, is_superuser=True)
    order = in_thread(make_order, "delivering")
    Alert.objects.create(order=order, rider=rider, kind=AlertKind.STALL, message="骑手已 5 分钟未移动")
    phone = rider_app("rita")
    phone.report(31.1900, 121.4400)

    watch = open_page(DESKTOP)
    page = watch.page
    log_in(watch, daphne_server.url, "boss", next_path="/admin/")
    page.click("#ops-map-link")
    page.wait_for_function(RIDER_AT, arg=[rider.pk, 31.19, 121.44], timeout=WAIT_MS)
    page.wait_for_function("window.opsMap.mode === 'live'", timeout=WAIT_MS)
    expect(page.locator("#conn-indicator")).to_contain_text("实时")
    expect(page.locator("#alert-list li")).to_have_count(1)
    expect(page.locator("#alert-list li")).to_contain_text("骑手停滞")
    expect(page.locator("#stat-alerts")).to_have_text("1")
    expect(page.locator(".rider-icon.has-alert")).to_have_count(1)

    phone.report(31.1930, 121.4430)
    page.wait_for_function(RIDER_AT, arg=[rider.pk, 31.193, 121.443], timeout=WAIT_MS)

    # Alerts open and resolve live.
    deviation = Finding(kind=AlertKind.DEVIATION, active=True, message="偏离路线 800 米")
    in_thread(alert_open, order_id=order.id, finding=deviation)
    expect(page.locator("#alert-list li")).to_have_count(2, timeout=PUSH_OR_REFRESH_MS)
    expect(page.locator("#alert-list")).to_contain_text("偏离路线 800 米")
    in_thread(alert_resolve, order_id=order.id, kind=AlertKind.STALL)
    expect(page.locator("#alert-list li")).to_have_count(1, timeout=PUSH_OR_REFRESH_MS)
    expect(page.locator("#alert-list")).not_to_contain_text("骑手已 5 分钟未移动")

    page.locator(".rider-icon.has-alert").click()
    expect(page.locator("#rider-orders")).to_contain_text(order.id[:8])
    expect(page.locator("#rider-orders")).to_contain_text("配送中")
    page.wait_for_timeout(400)  # the popup fades in
    watch.screenshot("ops-map-desktop")
    page.set_viewport_size(PHONE)
    watch.screenshot("ops-map-phone", full_page=True)
    page.set_viewport_size(DESKTOP)

    page.goto(f"{daphne_server.url}/admin/orders/order/{order.id}/change/")
    expect(page.locator("#track-summary")).to_contain_text("轨迹点 2 个", timeout=WAIT_MS)
    expect(page.locator("#track-timeline li")).to_have_count(6)  # created, paid, 3 stages, dispatched
    expect(page.locator("#track-timeline")).to_contain_text("已打包")
    expect(page.locator("#track-alerts")).to_contain_text("骑手已 5 分钟未移动")  # resolved, still in history
    expect(page.locator("#order-track-map .leaflet-interactive").first).to_be_visible()
    watch.screenshot("admin-order-desktop")


def test_the_admin_order_map_shows_flagged_points_apart_with_their_reasons(
    daphne_server, open_page, rider_app, make_order
):
    make_user("boss", is_staff=True, is_superuser=True)
    order = in_thread(make_order, "delivering")
    phone = rider_app("rita")
    phone.report(31.1900, 121.4400, accuracy=8.0)
    phone.report(31.1901, 121.4401, accuracy=900.0)  # a vague fix: stored, flagged
    phone.report(31.1903, 121.4402, accuracy=8.0)

    watch = open_page(DESKTOP)
    page = watch.page
    log_in(watch, daphne_server.url, "boss", next_path=f"/admin/orders/order/{order.id}/change/")
    root = page.locator("#order-track")
    expect(page.locator("#track-summary")).to_contain_text("轨迹点 2 个", timeout=WAIT_MS)
    expect(page.locator("#track-summary")).to_contain_text("另有 1 个定位异常点")
    expect(root).to_have_attribute("data-flagged-points", "1")
    page.wait_for_function("document.getElementById('order-track').dataset.live === 'live'", timeout=WAIT_MS)

    # Live: a fix at (0, 0) joins the flagged dots, the path stays as it was.
    phone.report(0.0, 0.0, recorded_at=dt.datetime.now(dt.UTC))
    expect(root).to_have_attribute("data-flagged-points", "2", timeout=PUSH_OR_REFRESH_MS)
    expect(root).to_have_attribute("data-path-length", "2")
    red = page.locator("#order-track-map path.leaflet-interactive[stroke='#d93025']")
    expect(red).to_have_count(2)
    red.first.dispatch_event("mouseover")  # the rider marker lies on top of it
    expect(page.locator(".leaflet-tooltip")).to_contain_text("定位精度差")
    watch.screenshot("admin-order-flagged-points")


def test_ops_map_is_staff_only(daphne_server, open_page, customer):
    watch = open_page(DESKTOP)
    log_in(watch, daphne_server.url, "alice")
    watch.page.goto(f"{daphne_server.url}/ops/map/")
    expect(watch.page).to_have_url(re.compile(r"/admin/login/"))


def test_ops_map_clusters_thousands_of_riders(daphne_server, open_page):
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from tracking.models import Rider

    make_user("boss", is_staff=True, is_superuser=True)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"crowd{number}", password="!") for number in range(400)
    )
    now = timezone.now()
    Rider.objects.bulk_create(
        Rider(
            user=user,
            display_name=f"骑手{number}",
            online=True,
            last_lat=31.15 + (number % 20) * 0.004,
            last_lon=121.40 + (number // 20) * 0.004,
            last_recorded_at=now - dt.timedelta(seconds=number),
        )
        for number, user in enumerate(users)
    )
    watch = open_page(DESKTOP)
    page = watch.page
    log_in(watch, daphne_server.url, "boss", next_path="/ops/map/")
    page.wait_for_function("window.opsMap && window.opsMap.riderIds().length === 400", timeout=WAIT_MS)
    expect(page.locator(".marker-cluster").first).to_be_visible(timeout=WAIT_MS)
    assert page.locator(".rider-icon").count() < 400  # most riders are inside clusters at this zoom
    watch.screenshot("ops-map-clustered")
