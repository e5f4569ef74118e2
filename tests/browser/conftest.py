"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright against a live Daphne.

Browser tests are marked `browser`. Without /usr/bin/chromium they skip,
except under CI=true where they fail (.ci/run installs the package).
Screenshots land in test-artifacts/browser/ (gitignored).
"""

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from tests.conftest import IN_CI, PASSWORD
from xiaoxiang.geo import haversine_m

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PHONE = {"width": 390, "height": 844}
# Tests move a rider in jumps of hundreds of metres seconds apart; a phone's fixes are as far apart in
# device time as the ride at this speed, or the GPS quality rule flags them as impossible (tracking/quality.py).
RIDE_SPEED_MPS = 40
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="package")
def allow_orm_beside_playwright() -> Iterator[None]:
    """Playwright's sync API keeps an event loop running in this thread while it is open.

    The tests' own ORM calls are plain synchronous code, so Django's async guard
    is lifted, but only while the browser package runs: the loop and the flag
    both end with it, and later tests see neither.
    """
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser(allow_orm_beside_playwright) -> Iterator[Any]:
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail("CI=true and /usr/bin/chromium is missing (apt-get install chromium)")
        pytest.skip("browser tests need /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageWatch:
    """A page plus every console error and uncaught exception it produced."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        # The console only says "Failed to load resource"; name the request.
        page.on(
            "response",
            lambda response: (
                response.status >= 500
                and self.errors.append(f"HTTP {response.status} {response.request.method} {response.url}")
            ),
        )

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def open_page(browser) -> Iterator[Any]:
    """open_page(viewport=PHONE) -> PageWatch; at the end, asserts the page logged no JavaScript errors."""
    contexts: list[Any] = []
    watches: list[PageWatch] = []

    def _open(viewport: dict[str, int] = PHONE) -> PageWatch:
        context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(15000)
        contexts.append(context)
        watch = PageWatch(context.new_page())
        watches.append(watch)
        return watch

    yield _open
    for context in contexts:
        context.close()
    errors = [error for watch in watches for error in watch.errors]
    assert errors == [], f"JavaScript errors in the browser: {errors}"


def log_in(watch: PageWatch, base_url: str, username: str, next_path: str = "") -> None:
    page = watch.page
    page.goto(f"{base_url}/accounts/login/" + (f"?next={next_path}" if next_path else ""))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/(orders|admin|ops)/.*"))


def in_thread(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run a service call off this thread.

    Playwright keeps an event loop in the test's thread, where async_to_sync
    (the on-commit publish to the channel layer) refuses to run; a plain
    thread publishes like a real web or worker process would.
    """

    def call() -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


class RiderApp:
    """A rider's phone: JWT login and GPS points over the REST API, as the real app does."""

    def __init__(self, base_url: str, username: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=20)
        response = self.client.post("/api/auth/token/", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.client.headers["Authorization"] = f"Bearer {response.json()['access']}"
        self.sent = 0
        self.last: tuple[float, float, dt.datetime] | None = None

    def report(self, lat: float, lon: float, *, recorded_at: dt.datetime | None = None, **extra: Any) -> None:
        self.sent += 1
        if recorded_at is None:
            recorded_at = dt.datetime.now(dt.UTC)
            if self.last is not None:
                last_lat, last_lon, last_at = self.last
                ride = dt.timedelta(seconds=haversine_m(last_lat, last_lon, lat, lon) / RIDE_SPEED_MPS)
                recorded_at = max(recorded_at, last_at + ride)
        self.last = (lat, lon, recorded_at)
        point = {
            "client_id": f"test-{self.sent}-{lat}-{lon}",
            "lat": lat,
            "lon": lon,
            "recorded_at": recorded_at.isoformat(),
            **extra,
        }
        response = self.client.post("/api/rider/locations/", json={"points": [point]})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1, response.text

    def delivered(self, order_id: str) -> None:
        response = self.client.post(f"/api/rider/orders/{order_id}/delivered/", json={})
        assert response.status_code == 200, response.text

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def rider_app(daphne_server) -> Iterator[Any]:
    apps: list[RiderApp] = []

    def _app(username: str) -> RiderApp:
        app = RiderApp(daphne_server.url, username)
        apps.append(app)
        return app

    yield _app
    for app in apps:
        app.close()
