"""The terminal pages through Django's test client: each role gets its own page, others go to login."""

import json

import pytest
from django.test import Client

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

PAGES = {"/shop/": "customer", "/warehouse/": "operator", "/rider/": "rider"}


def logged_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_login(path):
    response = Client().get(path)
    assert (response.status_code, response["Location"]) == (302, f"/accounts/login/?next={path}")


@pytest.mark.parametrize(("path", "owner"), PAGES.items())
def test_each_page_is_for_its_role_only(request, path, owner, customer, operator, rider, staff):
    personas = {"customer": customer, "operator": operator, "rider": rider, "staff": staff}
    for name, user in personas.items():
        response = logged_in(user).get(path)
        if name == owner:
            assert response.status_code == 200, name
        else:
            assert (response.status_code, response["Location"]) == (302, f"/accounts/login/?next={path}"), name


def test_rider_page_exposes_the_report_interval_and_is_installable(rider, settings):
    settings.RIDER_REPORT_SECONDS = 7
    html = logged_in(rider).get("/rider/").content.decode()
    assert '"reportSeconds": 7' in html
    assert 'rel="manifest" href="/rider/manifest.webmanifest"' in html
    manifest = json.loads(Client().get("/rider/manifest.webmanifest").content)
    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == ("/rider/", "/rider/", "standalone")
    worker = Client().get("/rider/sw.js")
    assert worker["Content-Type"].startswith("text/javascript")
    body = worker.content.decode()
    shell = ("/rider/", "/static/js/rider-app.js", "/static/js/rider-queue.js", "/static/vendor/leaflet/leaflet.js")
    for asset in shell:
        assert f'"{asset}"' in body
    assert "http" not in body.split("const SHELL")[1].split(";")[0]  # no CDN


def test_warehouse_page_lists_available_riders_for_dispatch(operator, rider):
    html = logged_in(operator).get("/warehouse/").content.decode()
    assert '<option value="rita">骑手rita</option>' in html
    assert "徐汇仓" in html


def test_header_links_follow_the_role(customer, operator, rider):
    assert 'href="/shop/"' in logged_in(customer).get("/orders/").content.decode()
    assert 'href="/warehouse/"' in logged_in(operator).get("/orders/").content.decode()
    assert 'href="/rider/"' in logged_in(rider).get("/orders/").content.decode()
    assert 'id="notif-bell"' in logged_in(customer).get("/orders/").content.decode()
