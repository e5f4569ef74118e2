"""A real Prometheus scraping the running production topology, with the shipped config, rules and dashboard.

Prometheus (Debian's package) runs with deploy/prometheus/prometheus.yml,
pointed at this run's processes and scraping every second, and loads
deploy/prometheus/rules.yml. A small load (rider points over REST, watchers
on the three socket streams, a rejected socket, a long-poll, two lost
publishes that the sockets repair, a delivery) must move every metric
docs/operations.md lists; every PromQL expression of the rules and the
Grafana dashboard must evaluate without error. Then real trouble, one kind
at a time, moves the failure metrics and raises their alert rules: a socket
whose opening read waits on a locked table (channel backlog), a channel-layer
Redis shard going down (publish failures, repairs), a stalled Daphne (frame
delay), a stalled Celery worker (queue length, a target down) and a late
order (an open alert).
"""

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
import pytest
import websockets
import websockets.sync.client
import yaml
from channels_redis.utils import _consistent_hash
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from orders.models import Order
from tests.conftest import make_rider
from tests.live import ROOT, LiveServer, free_port, start_redis, stop, wait_until
from tests.live import test_database_url as database_url
from tests.ops.conftest import METRICS_TOKEN, Topology
from tracking.models import AlertKind, EventKind, OperatorType, TrackingEvent
from tracking.publish import order_group
from tracking.snapshot import order_version_key
from tracking.tasks import alerts_evaluate

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

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
# Present after the healthy load; test_failures_... moves them (a healthy load leaves them at 0).
FAILURE_METRICS = [
    "xiaoxiang_channel_publish_failures_total",
    "xiaoxiang_redis_unavailable_total",
    "xiaoxiang_channel_backlog",
    "xiaoxiang_celery_queue_length",
    "xiaoxiang_alerts_open",
]
# The channel layer's two hosts: the shared Redis, and (index SHARD) this module's own, which a test takes down.
LAYER_HOSTS = 2
SHARD = 1


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

    def alerts(self) -> dict[str, dict]:
        """The rules' alerts pending or firing now, by name."""
        response = httpx.get(f"{self.url}/api/v1/alerts", timeout=10)
        return {alert["labels"]["alertname"]: alert for alert in response.json()["data"]["alerts"]}


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


@pytest.fixture(scope="module")
def channel_shard(tmp_path_factory) -> Iterator[LiveServer]:
    """The channel layer's second Redis host, this module's own: a test takes it down and brings it back."""
    shard = start_redis(tmp_path_factory.mktemp("shard"))
    yield shard
    stop(shard.process)


@pytest.fixture(scope="module")
def topology_env(channel_shard) -> dict[str, str]:
    hosts = [settings.REDIS_URL, f"redis://127.0.0.1:{channel_shard.port}/0"]
    assert len(hosts) == LAYER_HOSTS and hosts[SHARD].endswith(f":{channel_shard.port}/0")
    # Sockets glance for lost publishes every second here (5 s by default), so the repairs show quickly.
    return {"WS_CATCH_UP_SECONDS": "1", "CHANNEL_LAYER_HOSTS": ",".join(hosts)}


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


def quiet(prometheus: Prometheus, *names: str) -> None:
    """Wait until the alert rules `names` are inactive: what follows is what raises them."""
    wait_until(lambda: not set(names) & set(prometheus.alerts()), timeout=30, what=f"{names} inactive")


def raised(prometheus: Prometheus, name: str, *, timeout: float = 30) -> str:
    """Wait until alert rule `name` is pending or firing (its `for:` is minutes); the evidence line."""
    alert = wait_until(lambda: prometheus.alerts().get(name), timeout=timeout, what=f"alert {name} pending")
    job = f", job {alert['labels']['job']}" if "job" in alert["labels"] else ""
    return f"{name:<48} inactive -> {alert['state']} (value {float(alert['value']):g}{job})"


def moved(name: str, *values: float) -> str:
    """The evidence line of a metric: its values before, during and after a part of the load."""
    return f"{name:<48} " + " -> ".join(f"{value:g}" for value in values)


def points(count: int, *, recorded_ago: float = 0) -> dict:
    """A batch of `count` fresh points (or recorded `recorded_ago` seconds ago: an offline phone's upload)."""
    now = timezone.now() - dt.timedelta(seconds=recorded_ago)
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


def totals(prometheus: Prometheus, names: list[str]) -> dict[str, float]:
    return {name: prometheus.scalar(f"sum({name})") for name in names}


def gauges(prometheus: Prometheus) -> dict[str, float]:
    """The domain gauges the healthy load moves (the ETA error has no series before a measured delivery).

    Riders online moves in test_failures_... (a new rider).
    """
    return {
        name: prometheus.scalar(f"max({name})")
        for name in (
            'xiaoxiang_orders{status="completed"}',
            "xiaoxiang_eta_deliveries_measured",
            'xiaoxiang_eta_error_seconds{quantile="0.5"}',
        )
    }


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
        "sockets_open": prometheus.scalar("sum(xiaoxiang_ws_connections_open)"),
        **gauges(prometheus),
    }
    quiet(prometheus, "XiaoxiangNoPointsWhileDelivering")
    order = make_order("delivering")
    headers = {"Authorization": f"Bearer {AccessToken.for_user(rider)}"}
    # Before the first point: an order is delivering and nothing has been ingested.
    evidence = [raised(prometheus, "XiaoxiangNoPointsWhileDelivering")]

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
    def unmoved() -> list[str]:
        now = {**totals(prometheus, COUNTERS), **histogram_counts(prometheus)}
        return [name for name, value in now.items() if value <= baseline[name]]

    wait_until(lambda: not unmoved(), timeout=30, what="every counter and histogram to move")
    # The evidence, for `pytest -rP`: each metric before and after the load.
    after = {**totals(prometheus, COUNTERS), **histogram_counts(prometheus)}
    for name, value in after.items():
        print(moved(name, baseline[name], value))
    print(*evidence, sep="\n")
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

    def missing() -> list[str]:
        return [expr for expr in produced if prometheus.scalar(expr) < 1]

    wait_until(lambda: not missing(), timeout=30, what=lambda: f"{missing()}")
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
    sockets = baseline["sockets_open"]
    print(moved("xiaoxiang_ws_connections_open", sockets, sockets + 3, sockets))
    for name, value in gauges(prometheus).items():
        print(moved(name, baseline[name], value))

    present = prometheus.query('group by (__name__) ({__name__=~"xiaoxiang_.*"})')["result"]
    names = {series["metric"]["__name__"] for series in present}
    expected = {*COUNTERS, *MOVING_GAUGES, *FAILURE_METRICS, *(f"{name}_bucket" for name in HISTOGRAMS)}
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


def layer_shard(group: str) -> int:
    """The channel-layer host of a group: the consistent hash channels-redis and xiaoxiang.push place it by."""
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return _consistent_hash(f"{prefix}__group__{group}", LAYER_HOSTS)


def order_on_shard(make_order) -> Order:
    """A delivering order whose group lives on this module's own Redis shard (about one order in two does)."""
    for _ in range(20):
        order = make_order("delivering")
        if layer_shard(order_group(order.pk)) == SHARD:
            return order
        order.delete()
    raise AssertionError("20 orders and none on the shard")


@contextlib.contextmanager
def table_locked(table: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on `table` from a connection of its own: every read of it waits."""
    connection = psycopg2.connect(database_url())
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        connection.rollback()
        connection.close()


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """A process frozen (SIGSTOP) as a stalled one would be: alive, holding its sockets, doing nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_failures_move_the_failure_metrics_and_raise_their_alert_rules(
    request, topology: Topology, prometheus, channel_shard, make_order, customer, rider, groups
):
    evidence = []
    sockets = contextlib.ExitStack()
    request.addfinalizer(sockets.close)
    client = sockets.enter_context(
        httpx.Client(
            base_url=topology.url, headers={"Authorization": f"Bearer {AccessToken.for_user(rider)}"}, timeout=30
        )
    )

    def post(batch: dict) -> int:
        response = client.post("/api/rider/locations/", json=batch)
        assert response.status_code == 200, response.text
        return response.json()["accepted"]

    @contextlib.contextmanager
    def watcher(order: Order) -> Iterator[websockets.sync.client.ClientConnection]:
        with websockets.sync.client.connect(f"{topology.ws_url}/ws/orders/{order.pk}/") as ws:
            ws.send(json.dumps({"type": "auth", "token": str(AccessToken.for_user(customer))}))
            yield ws

    def frame(ws, version: int) -> dict:
        deadline = time.monotonic() + 20
        while True:
            found = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if found["type"] in ("event", "snapshot") and found["version"] >= version:
                return found

    def current_version(order: Order) -> int:
        return Order.objects.get(pk=order.pk).version

    order = order_on_shard(make_order)
    assert post(points(1)) == 1  # the snapshot cache is warm: the next points advance it without a rebuild
    offline_from = timezone.now()  # the rider's phone keeps points from here for the last part
    watchers = [sockets.enter_context(watcher(order)) for _ in range(8)]
    for ws in watchers:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"

    # 1. The order's channel-layer shard goes down while the database is slow (a lock holds every
    # read of the warehouses, which a socket's repair joins): the web's publish of a point fails
    # (the point itself is committed), the shard comes back, and the sockets' repairs of the lost
    # version wait on the database while the order's next points keep arriving: they queue up in
    # the Daphne process, the backlog.
    quiet(prometheus, "XiaoxiangPublishDrops", "XiaoxiangRepairsRising", "XiaoxiangRedisUnavailable")
    failures = prometheus.scalar("sum(xiaoxiang_channel_publish_failures_total)")
    unavailable = prometheus.scalar('sum(xiaoxiang_redis_unavailable_total{use="publish"})')
    repairs = prometheus.scalar("sum(xiaoxiang_channel_repairs_total)")
    backlog = prometheus.scalar("max(xiaoxiang_channel_backlog)")
    with table_locked("warehouses"):
        stop(channel_shard.process)
        try:
            assert post(points(2)) == 2  # the ingest and its publish read no warehouse
            wait_until(
                lambda: prometheus.scalar("sum(xiaoxiang_channel_publish_failures_total)") > failures,
                timeout=15,
                what="the failed publish in Prometheus",
            )
        finally:
            channel_shard.process = start_redis(channel_shard.log_path.parent, channel_shard.port).process
        lost_failures = prometheus.scalar("sum(xiaoxiang_channel_publish_failures_total)")
        wait_until(
            lambda: prometheus.scalar('sum(xiaoxiang_redis_unavailable_total{use="publish"})') > unavailable,
            timeout=15,
            what="the publish that went on without Redis in Prometheus",
        )
        went_on = prometheus.scalar('sum(xiaoxiang_redis_unavailable_total{use="publish"})')

        def queued() -> bool:
            post(points(1))
            return prometheus.scalar("max(xiaoxiang_channel_backlog)") >= backlog + 3

        wait_until(queued, timeout=20, what="messages queued behind the sockets' repairs")
        peak = prometheus.scalar("max(xiaoxiang_channel_backlog)")
    # The lock gone, every socket repairs to the newest version and consumes what queued meanwhile.
    newest = current_version(order)
    for ws in watchers:
        assert frame(ws, newest)["version"] == newest
    wait_until(
        lambda: prometheus.scalar("max(xiaoxiang_channel_backlog)") == backlog, timeout=15, what="backlog drained"
    )
    wait_until(
        lambda: prometheus.scalar("sum(xiaoxiang_channel_repairs_total)") >= repairs + len(watchers),
        timeout=15,
        what="a repair per socket",
    )
    evidence += [
        moved("xiaoxiang_channel_publish_failures_total", failures, lost_failures),
        moved('xiaoxiang_redis_unavailable_total{use="publish"}', unavailable, went_on),
        raised(prometheus, "XiaoxiangRedisUnavailable"),
        moved("xiaoxiang_channel_backlog", backlog, peak, backlog),
        moved("xiaoxiang_channel_repairs_total", repairs, prometheus.scalar("sum(xiaoxiang_channel_repairs_total)")),
        raised(prometheus, "XiaoxiangPublishDrops"),
        raised(prometheus, "XiaoxiangRepairsRising"),
    ]

    # 2. A stalled Daphne (a long GC pause, a starved CPU): the points published meanwhile wait in
    # its Redis connection and reach the sockets seconds late.
    quiet(prometheus, "XiaoxiangSocketDeliveryLatencyHigh")
    with stopped(topology.main_pid("xiaoxiang.asgi:application")):
        assert post(points(1)) == 1
        time.sleep(3)
    delayed = current_version(order)
    for ws in watchers:
        assert frame(ws, delayed)["version"] >= delayed
    evidence.append(raised(prometheus, "XiaoxiangSocketDeliveryLatencyHigh"))

    # 3. A stalled Celery worker: the alert jobs of a late order queue up in the broker; its scrape fails.
    # The order is a new rider's (one more rider online).
    quiet(prometheus, "XiaoxiangJobBacklogGrowing", "XiaoxiangTargetDown")
    riders = prometheus.scalar("max(xiaoxiang_riders_online)")
    late = make_order("delivering", assigned=make_rider("rhea", groups))
    Order.objects.filter(pk=late.pk).update(promised_at=timezone.now() - dt.timedelta(minutes=10))
    queue = prometheus.scalar("max(xiaoxiang_celery_queue_length)")
    alerts = prometheus.scalar(f'max(xiaoxiang_alerts_open{{kind="{AlertKind.LATE}"}})')
    with stopped(topology.main_pid("-A", "xiaoxiang", "worker")):
        for step in range(1, 4):
            for _ in range(40):
                alerts_evaluate.delay(str(late.pk))
            wait_until(
                # (a pop the worker had asked for before it stalled may still take one)
                lambda step=step: prometheus.scalar("max(xiaoxiang_celery_queue_length)") >= queue + 40 * step - 1,
                timeout=15,
                what=f"{40 * step} jobs queued",
            )
        peak = prometheus.scalar("max(xiaoxiang_celery_queue_length)")
        evidence += [raised(prometheus, "XiaoxiangJobBacklogGrowing"), raised(prometheus, "XiaoxiangTargetDown")]
    # The worker back, it drains the queue; the first of those jobs opened the late order's alert.
    wait_until(
        lambda: (
            prometheus.scalar("max(xiaoxiang_celery_queue_length)") <= queue
            and prometheus.scalar(f'max(xiaoxiang_alerts_open{{kind="{AlertKind.LATE}"}})') == alerts + 1
            and prometheus.scalar("max(xiaoxiang_riders_online)") == riders + 1
        ),
        timeout=60,
        what="the queue drained and the late order's alert open",
    )
    evidence += [
        moved("xiaoxiang_celery_queue_length", queue, peak, queue),
        moved("xiaoxiang_riders_online", riders, riders + 1),
        moved('xiaoxiang_alerts_open{kind="late"}', alerts, alerts + 1),
    ]

    # 4. The rider's phone, offline for over a minute, uploads what it recorded meanwhile.
    quiet(prometheus, "XiaoxiangRiderLagHigh")
    time.sleep(max(0.0, 75 - (timezone.now() - offline_from).total_seconds()))
    buffered = points(5, recorded_ago=(timezone.now() - offline_from).total_seconds())
    assert post(buffered) == 5
    evidence.append(raised(prometheus, "XiaoxiangRiderLagHigh"))
    print(*evidence, sep="\n")
