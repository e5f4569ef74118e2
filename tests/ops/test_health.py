"""GET /healthz, GET /readyz and /metrics (DESIGN.md section 9): cheap, unauthenticated, revealing nothing.

Not ready is shown with the real failures: a Daphne whose REDIS_URL points
at a port nothing listens on, and one whose database has no migrations.
"""

import httpx
import pytest

from tests.live import free_port, start_daphne, stop

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_ok_with_no_dependencies(client):
    response = client.get("/healthz")
    assert (response.status_code, response.content, response["Cache-Control"]) == (200, b"ok\n", "no-store")


def test_readyz_answers_ready_when_database_cache_and_channel_layer_answer(client):
    response = client.get("/readyz")
    assert (response.status_code, response.content) == (200, b"ready\n")


def test_probes_answer_a_pod_address_that_allowed_hosts_does_not_list(client, settings):
    # Kubelets and Prometheus call pods by IP, over plain HTTP.
    settings.ALLOWED_HOSTS = ["shop.example"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/api/products/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_readyz_is_503_when_redis_is_unreachable_and_says_nothing_more(tmp_path):
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    server = start_daphne(tmp_path, REDIS_URL=nothing_listens)
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=15)
        alive = httpx.get(f"{server.url}/healthz", timeout=5)
    finally:
        stop(server.process)
    assert (ready.status_code, ready.text) == (503, "not ready\n")
    assert (alive.status_code, alive.text) == (200, "ok\n")


def test_readyz_is_503_while_migrations_are_not_applied(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    server = start_daphne(tmp_path, DATABASE_URL=f"sqlite:///{empty}")
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=15)
    finally:
        stop(server.process)
    assert (ready.status_code, ready.text) == (503, "not ready\n")


def test_metrics_are_404_without_a_configured_token(client, monkeypatch):
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_are_403_without_the_token_and_the_exposition_with_it(client, monkeypatch):
    monkeypatch.setenv("METRICS_TOKEN", "s3cret-scraper")
    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrapeR")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scraper")

    assert (missing.status_code, missing.content) == (403, b"Forbidden.\n")
    assert (wrong.status_code, wrong.content) == (403, b"Forbidden.\n")
    assert right.status_code == 200
    assert right["Content-Type"].startswith("text/plain; version=")
    body = right.content.decode()
    assert 'xiaoxiang_orders{status="delivering"} 0.0' in body
    assert "xiaoxiang_riders_online 0.0" in body
    assert 'xiaoxiang_ws_connections_open{stream="orders"}' in body
