"""POST /api/rider/status/: the rider app's device report, stored on the rider, shown on the ops
map and in the offline alert's message; refused reports change nothing."""

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from tests.conftest import PASSWORD
from tracking.alert_services import order_alerts_evaluate
from tracking.models import Alert, AlertKind, Rider
from tracking.ops import ops_riders_active

pytestmark = pytest.mark.django_db

URL = "/api/rider/status/"


def device_fields(user) -> tuple:
    rider = Rider.objects.get(pk=user.pk)
    return rider.device_location, rider.device_battery_level, rider.device_charging, rider.device_reported_at


def test_a_report_is_stored_on_the_rider_and_answered_with_the_reason(api, rider):
    response = api(rider).post(URL, {"location": "denied", "battery_level": 0.12, "charging": False}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("location", "battery_level", "charging", "reason")} == {
        "location": "denied",
        "battery_level": 0.12,
        "charging": False,
        "reason": "定位权限被拒绝，电量低（12%）",
    }
    location, level, charging, reported_at = device_fields(rider)
    assert (location, level, charging) == ("denied", 0.12, False)
    assert abs((timezone.now() - reported_at).total_seconds()) < 5


def test_a_healthy_report_has_no_reason_and_battery_is_optional(api, rider):
    response = api(rider).post(URL, {"location": "ok"}, format="json")

    assert response.status_code == 200
    assert (response.json()["reason"], response.json()["battery_level"]) == ("", None)
    assert device_fields(rider)[:3] == ("ok", None, None)


def test_low_battery_while_charging_is_not_a_reason(api, rider):
    response = api(rider).post(URL, {"location": "ok", "battery_level": 0.05, "charging": True}, format="json")

    assert response.json()["reason"] == ""


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"location": "lost"},
        {"location": "ok", "battery_level": 1.5},
        {"location": "ok", "battery_level": "half"},
        {"location": "ok", "charging": "maybe"},
    ],
)
def test_a_bad_report_is_400_and_changes_nothing(api, rider, body):
    before = device_fields(rider)

    response = api(rider).post(URL, body, format="json")

    assert response.status_code == 400
    assert "detail" in response.json()
    assert device_fields(rider) == before


def test_only_riders_may_report(api, customer, operator, rider):
    assert api(customer).post(URL, {"location": "ok"}, format="json").status_code == 403
    assert api(operator).post(URL, {"location": "ok"}, format="json").status_code == 403
    assert api().post(URL, {"location": "ok"}, format="json").status_code == 401
    assert device_fields(rider)[3] is None


def test_the_browser_app_reports_with_its_session_and_csrf(rider):
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username=rider.username, password=PASSWORD)
    assert browser.post(URL, {"location": "unavailable"}, content_type="application/json").status_code == 403
    browser.get("/rider/")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    response = browser.post(URL, {"location": "unavailable"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert device_fields(rider)[0] == "unavailable"


def test_the_ops_map_and_the_offline_alert_say_why_the_rider_is_dark(api, rider, make_order, settings):
    order = make_order("delivering")
    api(rider).post(URL, {"location": "denied", "battery_level": 0.5, "charging": False}, format="json")

    assert [entry["device"]["reason"] for entry in ops_riders_active()] == ["定位权限被拒绝"]
    later = timezone.now() + dt.timedelta(seconds=settings.ALERT_OFFLINE_SECONDS + 60)
    assert order_alerts_evaluate(order_id=order.id, now=later)["offline"] == "opened"
    alert = Alert.objects.get(order=order, kind=AlertKind.OFFLINE, resolved_at__isnull=True)
    assert alert.message.endswith("（设备：定位权限被拒绝）")
    assert alert.data["device"]["location"] == "denied"
