import pytest


@pytest.mark.django_db
def test_unknown_api_url_is_json_404(client):
    response = client.get("/api/no-such-endpoint/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.django_db
def test_unknown_page_is_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_api_docs_load_swagger_ui_from_our_static_files_not_a_cdn(client):
    html = client.get("/api/docs/").content.decode()
    assert "cdn.jsdelivr" not in html and "unpkg" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200


def test_root_redirects_to_my_orders(client):
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/orders/")
