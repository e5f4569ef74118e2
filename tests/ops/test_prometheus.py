"""A real Prometheus scraping the running production topology, with the shipped config, rules and dashboard.

Prometheus (Debian's package) runs with deploy/prometheus/prometheus.yml,
pointed at this run's processes and scraping every second, and loads
deploy/prometheus/rules.yml. A small load (rider points over REST, watchers
on the three socket streams, a rejected socket, a long-poll, two lost
publishes that the sockets repair, a delivery) must move every metric
docs/operations.md lists; every PromQL expression of the rules and the
Grafana dashboard must evaluate without error.
"""

import asyncio
import datetime as dt
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
import yaml
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from orders.models import Order
from tests.live import ROOT, free_port, stop
from tests.ops.conftest import METRICS_TOKEN
from tracking.models import EventKind, OperatorType, TrackingEvent
from tracking.snapshot import order_version_key

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Sockets glance for lost publishes every second here (5 s by default), so the repairs show quickly.
TOPOLOGY_ENV = {"WS_CATCH_UP_SECONDS": "1"}
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DEPLOY = ROOT / "deploy"
JOB_ROLES = {"xiaoxiang-web": "web", "xiaoxiang-ws": "ws", "xiaoxiang-worker": "worker"}

# Every metric docs/operations.md lists, and what this load must do to it.
COUNTERS = [
    "xiaoxiang_http_requests_total",
    "xiaoxiang_ingest_points_total",
    "xiaoxiang_channel_published_total",
    "xiaoxiang_channel_repairs_total",
    "xiaoxiang_ws_connects_total",
    "xiaoxiang_ws_closes_total",
    "xiaoxiang_ws_auth_failures_total",
    "xiaoxiang_celery_tasks_total",
]
HISTOGRAMS = [
    "xiaoxiang_http_request_seconds",
    "xiaoxiang_ingest_request_seconds",
    "xiaoxiang_ingest_lag_seconds",
    "xiaoxiang_publish_seconds",
    "xiaoxiang_ws_frame_delay_seconds",
    "xiaoxiang_celery_task_queue_wait_seconds",
    "xiaoxiang_celery_task_run_seconds",
]
# Gauges that move under this load (checked while the sockets are open / after the writes).
MOVING_GAUGES = [
    "xiaoxiang_ws_connections_open",
    "xiaoxiang_orders",
    "xiaoxiang_riders_online",
    "xiaoxiang_eta_error_seconds",
    "xiaoxiang_eta_deliveries_measured",
]
# Present, but nothing in a healthy small load moves them (no dropped publish, no backlog, no alert).
STEADY = [
    "xiaoxiang_channel_publish_failures_total",
    "xiaoxiang_channel_backlog",
    "xiaoxiang_celery_queue_length",
    "xiaoxiang_alerts_open",
]


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    log_path: Path

    def query(self, expr: str) -> dict:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert (response.status_code, body["status"]) == (200, "success"), f"{expr}: {body}"
        return body["data"]

    def scalar(self, expr: str) -> float:
        result = self.query(expr)["result"]
        return float(result[0]["value"][1]) if result else 0.0


def scrape_config(topology, token_file: Path, scrape_interval: str) -> dict:
    """The shipped deploy/prometheus/prometheus.yml, pointed at this run's processes."""
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval=scrape_interval, evaluation_interval=scrape_interval)
    config["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in config["rule_files"]]
    assert sorted(job["job_name"] for job in config["scrape_configs"]) == sorted(JOB_ROLES)
    for job in config["scrape_configs"]:
        job["authorization"]["credentials_file"] = str(token_file)
        job.pop("dns_sd_configs", None)
        port = topology.metrics_ports[JOB_ROLES[job["job_name"]]]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    return config


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def prometheus(topology, tmp_path_factory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    token_file = workdir / "token"
    token_file.write_text(METRICS_TOKEN)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(topology, token_file, "1s")))
    # The full check (rule files, credential files) on the shipped config as run here.
    checked = subprocess.run([PROMTOOL, "check", "config", str(config_path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    port = free_port()
    log_path = workdir / "prometheus.log"
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)

    def all_targets_up() -> bool:
        try:
            targets = httpx.get(f"{server.url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        except (httpx.HTTPError, ValueError):
            return False
        return len(targets) == len(JOB_ROLES) and all(target["health"] == "up" for target in targets)

    try:
        wait_until(all_targets_up, timeout=30, what=f"every target up; log:\n{log_path.read_text()}")
    except AssertionError:
        stop(process)
        raise
    yield server
    stop(process)


def totals(prometheus: Prometheus, names: list[str]) -> dict[str, float]:
    return {name: prometheus.scalar(f"sum({name})") for name in names}


def histogram_counts(prometheus: Prometheus) -> dict[str, float]:
    return {name: prometheus.scalar(f"sum({name}_count)") for name in HISTOGRAMS}


def lost_publish(order: Order) -> int:
    """Commit an event the way a crashed publisher would leave it: in the database, never on the layer."""
    with transaction.atomic():
        Order.objects.filter(pk=order.pk).update(version=F("version") + 1)
        version = Order.objects.get(pk=order.pk).version
        TrackingEvent.objects.bulk_create(
            [
                TrackingEvent(
                    order_id=order.pk,
                    status=order.status,
                    kind=EventKind.LOCATION,
                    operator_type=OperatorType.RIDER,
                    latitude="31.191000",
                    longitude="121.441000",
                    recorded_at=timezone.now(),
                    version=version,
                )
            ]
        )
    # The publish path would also have refreshed the version hint; sockets fall back to the database.
    cache.delete(order_version_key(order.pk))
    return version


def test_every_metric_moves_under_load_and_every_dashboard_and_rule_expression_evaluates(
    topology, prometheus, make_order, customer, rider, staff
):
    baseline = {
        **totals(prometheus, COUNTERS),
        **histogram_counts(prometheus),
        "orders_completed": prometheus.scalar('max(xiaoxiang_orders{status="completed"})'),
        "sockets_open": prometheus.scalar("sum(xiaoxiang_ws_connections_open)"),
    }
    order = make_order("delivering")
    headers = {"Authorization": f"Bearer {AccessToken.for_user(rider)}"}

    def points(count: int) -> dict:
        now = timezone.now()
        return {
            "points": [
                {
                    "client_id": uuid.uuid4().hex,
                    "lat": round(31.19 + 0.001 * step, 6),
                    "lon": 121.44,
                    "recorded_at": (now + dt.timedelta(milliseconds=step)).isoformat(),
                }
                for step in range(count)
            ]
        }

    async def watcher(path: str, user) -> websockets.ClientConnection:
        ws = await websockets.connect(f"{topology.ws_url}{path}")
        await ws.send(json.dumps({"type": "auth", "token": str(AccessToken.for_user(user))}))
        await asyncio.wait_for(ws.recv(), 10)  # the snapshot (or unread count)
        return ws

    async def frame(ws, predicate: Callable[[dict], bool], timeout: float = 20) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, "no matching frame in time"
            found = json.loads(await asyncio.wait_for(ws.recv(), remaining))
            if predicate(found):
                return found

    def event_at(version: int) -> Callable[[dict], bool]:
        return lambda found: found["type"] == "event" and found["version"] == version

    async def load() -> None:
        order_ws = await watcher(f"/ws/orders/{order.pk}/", customer)
        ops_ws = await watcher("/ws/ops/", staff)
        notifications_ws = await watcher("/ws/notifications/", customer)
        rejected = await websockets.connect(f"{topology.ws_url}/ws/orders/{order.pk}/")
        await rejected.send(json.dumps({"type": "auth", "token": "not-a-jwt"}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(rejected.recv(), 10)
        assert closed.value.rcvd.code == 4401

        async with httpx.AsyncClient(base_url=topology.url, headers=headers, timeout=30) as client:
            for _ in range(3):
                response = await client.post("/api/rider/locations/", json=points(2))
                assert response.json()["accepted"] == 2
            await frame(order_ws, event_at(order.version + 6))
            await frame(ops_ws, lambda found: found["type"] == "ops.riders")

            # A lost publish: the socket's catch-up glance finds it in the database.
            lost = await asyncio.to_thread(lost_publish, order)
            await frame(order_ws, event_at(lost))
            # Another, followed by a published point: the socket sees the gap and repairs at once.
            gap = await asyncio.to_thread(lost_publish, order)
            assert (await client.post("/api/rider/locations/", json=points(1))).json()["accepted"] == 1
            await frame(order_ws, event_at(gap + 1))

            poll = await client.get(
                f"/api/orders/{order.pk}/poll/",
                params={"since_version": 0, "timeout": 1},
                headers={"Authorization": f"Bearer {AccessToken.for_user(customer)}"},
            )
            assert poll.status_code == 200

            # While the three sockets are open, Prometheus sees them.
            await asyncio.to_thread(
                wait_until,
                lambda: prometheus.scalar("sum(xiaoxiang_ws_connections_open)") == baseline["sockets_open"] + 3,
                timeout=15,
                what="three open sockets in Prometheus",
            )
            # The worker's first ETA for the order (debounced after the points) is the one at dispatch.
            await asyncio.to_thread(
                wait_until,
                lambda: TrackingEvent.objects.filter(order_id=order.pk, kind=EventKind.ETA).exists(),
                timeout=20,
                what="the worker's ETA",
            )
            delivered = await client.post(f"/api/rider/orders/{order.pk}/delivered/", json={})
            assert delivered.status_code == 200, delivered.text
            await frame(notifications_ws, lambda found: found["type"] == "notification.created")
        for ws in (order_ws, ops_ws, notifications_ws):
            await ws.close()

    asyncio.run(load())

    # Counters and histograms: every one has moved (ETA jobs finish on the worker a few seconds later).
    def moved() -> list[str]:
        now = {**totals(prometheus, COUNTERS), **histogram_counts(prometheus)}
        return [name for name, value in now.items() if value <= baseline[name]]

    wait_until(lambda: not moved(), timeout=30, what="every counter and histogram to move")
    # The evidence, for `pytest -rP`: each metric before and after the load.
    after = {**totals(prometheus, COUNTERS), **histogram_counts(prometheus)}
    for name, value in after.items():
        print(f"{name:<48} {baseline[name]:>8g} -> {value:g}")
    # And the series each part of the load must have produced.
    produced = [
        'sum(xiaoxiang_channel_repairs_total{reason="catch_up"})',
        'sum(xiaoxiang_channel_repairs_total{reason="version_gap"})',
        'sum(xiaoxiang_celery_task_run_seconds_count{task="tracking.eta_recompute"})',
        'sum(xiaoxiang_celery_task_queue_wait_seconds_count{task="tracking.eta_recompute"})',
        'sum(xiaoxiang_celery_tasks_total{task="tracking.eta_recompute", outcome="success"})',
        'sum(xiaoxiang_ws_closes_total{code="4401"})',
        'sum(xiaoxiang_ws_frame_delay_seconds_count{stream="orders"})',
        'sum(xiaoxiang_ws_frame_delay_seconds_count{stream="ops"})',
        'sum(xiaoxiang_ws_frame_delay_seconds_count{stream="notifications"})',
        'sum(xiaoxiang_http_requests_total{job="xiaoxiang-ws", view="order-poll"})',
        'sum(xiaoxiang_http_requests_total{job="xiaoxiang-web", view="api-rider-locations"})',
    ]
    wait_until(
        lambda: all(prometheus.scalar(expr) >= 1 for expr in produced),
        timeout=15,
        what=f"every one of {produced}",
    )
    # Gauges: the domain moved (one delivery), the sockets are closed again.
    wait_until(
        lambda: (
            prometheus.scalar('max(xiaoxiang_orders{status="completed"})') >= 1
            and prometheus.scalar("sum(xiaoxiang_ws_connections_open)") == baseline["sockets_open"]
        ),
        timeout=15,
        what="the completed order and the closed sockets in Prometheus",
    )
    # One delivery with an ETA at dispatch: the ETA error is measured over it.
    assert prometheus.scalar("max(xiaoxiang_eta_deliveries_measured)") == 1
    assert prometheus.query("max by (quantile) (xiaoxiang_eta_error_seconds)")["result"] != []
    # The persona rider, online since its points: the gauge is the database's count.
    assert prometheus.scalar("max(xiaoxiang_riders_online)") == 1

    present = prometheus.query('group by (__name__) ({__name__=~"xiaoxiang_.*"})')["result"]
    names = {series["metric"]["__name__"] for series in present}
    expected = {*COUNTERS, *MOVING_GAUGES, *STEADY, *(f"{name}_bucket" for name in HISTOGRAMS)}
    assert expected - names == set()

    # Every expression of the dashboard and the rules evaluates; every rule has been evaluated healthily.
    dashboard = json.loads((DEPLOY / "grafana/dashboards/xiaoxiang.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for expr in expressions:
        prometheus.query(expr)
    loaded = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    health = {rule["name"]: (rule["health"], rule.get("lastError", "")) for group in loaded for rule in group["rules"]}
    assert health == {rule["alert"]: ("ok", "") for group in rules["groups"] for rule in group["rules"]}
