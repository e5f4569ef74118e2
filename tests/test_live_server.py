import httpx
import pytest

from tests.conftest import PASSWORD


@pytest.mark.django_db(transaction=True)
def test_daphne_serves_admin_login_and_static(daphne_server, staff):
    response = httpx.get(f"{daphne_server.url}/admin/login/")
    assert response.status_code == 200
    assert "csrfmiddlewaretoken" in response.text
    assert httpx.get(f"{daphne_server.url}/static/vendor/leaflet/leaflet.js").status_code == 200
    with httpx.Client(base_url=daphne_server.url) as client:
        client.get("/admin/login/")
        response = client.post(
            "/admin/login/?next=/admin/",
            data={"username": "sam", "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            follow_redirects=True,
        )
    assert response.status_code == 200
    assert "/admin/logout/" in response.text
