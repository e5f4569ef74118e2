"""Every Prometheus metric of the product, and how it is exposed (docs/operations.md lists them).

The hot path records through the one-line helpers below, so instrumenting a
hop is one call at its call site. This module imports no app: apps add
their own collectors (domain gauges) with `collector_register`.

Exposition. Daphne is one process: its default registry is its scrape
target. gunicorn's workers and the Celery worker's pool children write
prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by
deploy/gunicorn.conf.py and by xiaoxiang.celery before anything imports
prometheus-client), and whichever process answers the scrape sums them.
Only a caller with the METRICS_TOKEN bearer token may read them.
"""

import datetime as dt
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# No *_created series: a third more series for a timestamp nothing here queries.
disable_created_metrics()

# Seconds; from a few milliseconds (one hop in one process) to minutes (an offline upload's lag).
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# DESIGN.md section 5: the close code of a socket that failed authentication.
CLOSE_UNAUTHENTICATED = 4401

# --- HTTP ------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "xiaoxiang_http_requests_total", "HTTP requests answered, by view and status class.", ["view", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "xiaoxiang_http_request_seconds", "HTTP request duration inside Django, by view.", ["view"], buckets=FAST_BUCKETS
)

# --- Dependencies down: answered without them (Redis) or with 503 (PostgreSQL) ---------------
REDIS_UNAVAILABLE = Counter(
    "xiaoxiang_redis_unavailable_total",
    "Redis calls that found it unreachable; the request went on without Redis (fail open), by use.",
    ["use"],
)  # cache, publish, slots, layer
DATABASE_UNAVAILABLE = Counter(
    "xiaoxiang_database_unavailable_total",
    "Requests and sockets answered 503 / closed 1013 because the database was unreachable.",
    ["kind"],
)  # http, ws

# --- Rider GPS ingest ----------------------------------------------------------------
INGEST_REQUEST_SECONDS = Histogram(
    "xiaoxiang_ingest_request_seconds", "POST /api/rider/locations/ handler duration.", buckets=FAST_BUCKETS
)
INGEST_POINTS = Counter(
    "xiaoxiang_ingest_points_total", "Rider GPS points received, by outcome.", ["outcome"]
)  # accepted, duplicate, rejected
INGEST_FLAGGED_POINTS = Counter(
    "xiaoxiang_ingest_points_flagged_total",
    "Accepted rider GPS points the quality rule flagged (stored, not used as a position), by flag.",
    ["flag"],
)  # accuracy, zero, speed (a point may carry several)
INGEST_LAG_SECONDS = Histogram(
    "xiaoxiang_ingest_lag_seconds",
    "Device time (recorded_at) to ingest commit, per accepted point.",
    buckets=LAG_BUCKETS,
)

# --- Publish and delivery ------------------------------------------------------------
PUBLISH_SECONDS = Histogram(
    "xiaoxiang_publish_seconds", "Commit to channel-layer publish of a write's events.", buckets=FAST_BUCKETS
)
CHANNEL_PUBLISHED = Counter("xiaoxiang_channel_published_total", "Channel-layer group sends, by group kind.", ["group"])
CHANNEL_PUBLISH_FAILURES = Counter(
    "xiaoxiang_channel_publish_failures_total", "Channel-layer group sends that failed (dropped).", ["group"]
)
CHANNEL_REPAIRS = Counter(
    "xiaoxiang_channel_repairs_total",
    "Socket repairs from the database: version_gap (a message missing), catch_up (a publish late or lost) or "
    "rider_changed (an event that changed the order's rider, delivered after re-checking visibility).",
    ["reason"],
)
FRAME_DELAY_SECONDS = Histogram(
    "xiaoxiang_ws_frame_delay_seconds",
    "Publish to frame written on the socket, by stream.",
    ["stream"],
    buckets=FAST_BUCKETS,
)

# --- WebSockets ---------------------------------------------------------------------
WS_OPEN = Gauge(
    "xiaoxiang_ws_connections_open",
    "Open WebSocket connections of this process, by stream.",
    ["stream"],
    multiprocess_mode="livesum",
)
WS_CONNECTS = Counter("xiaoxiang_ws_connects_total", "WebSocket connections accepted, by stream.", ["stream"])
WS_CLOSES = Counter(
    "xiaoxiang_ws_closes_total", "WebSocket connections closed, by stream and code.", ["stream", "code"]
)
WS_AUTH_FAILURES = Counter(
    "xiaoxiang_ws_auth_failures_total", "WebSocket connections closed 4401 (not authenticated).", ["stream"]
)

# --- Celery ------------------------------------------------------------------------
CELERY_TASKS = Counter(
    "xiaoxiang_celery_tasks_total", "Celery task outcomes, by task.", ["task", "outcome"]
)  # success, failure, retry, rejected, revoked, worker_lost (requeued: its pool process died)
CELERY_QUEUE_WAIT_SECONDS = Histogram(
    "xiaoxiang_celery_task_queue_wait_seconds",
    "Time a task waited in the queue (from publish, or from its countdown's end).",
    ["task"],
    buckets=JOB_BUCKETS,
)
CELERY_RUN_SECONDS = Histogram(
    "xiaoxiang_celery_task_run_seconds", "Task run time in the worker.", ["task"], buckets=JOB_BUCKETS
)
CELERY_QUEUES = ("celery",)


STREAMS = ("orders", "ops", "notifications")
GROUP_KINDS = ("order", "ops", "notifications")

# Known label values start at zero, so a rate() or an alert on them has a series before the first event.
for _outcome_name in ("accepted", "duplicate", "rejected"):
    INGEST_POINTS.labels(_outcome_name)
for _group in GROUP_KINDS:
    CHANNEL_PUBLISHED.labels(_group)
    CHANNEL_PUBLISH_FAILURES.labels(_group)
for _reason in ("version_gap", "catch_up", "rider_changed"):
    CHANNEL_REPAIRS.labels(_reason)
for _use in ("cache", "publish", "slots", "layer"):
    REDIS_UNAVAILABLE.labels(_use)
for _kind in ("http", "ws"):
    DATABASE_UNAVAILABLE.labels(_kind)
for _stream in STREAMS:
    WS_OPEN.labels(_stream)
    WS_CONNECTS.labels(_stream)
    WS_AUTH_FAILURES.labels(_stream)


# --- One-line helpers for the call sites ---------------------------------------


def view_name(request) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.view_name if match else None) or "unmatched"


def http_observed(request, status_code: int, started_at: float) -> None:
    name = view_name(request)
    HTTP_REQUESTS.labels(name, f"{status_code // 100}xx").inc()
    HTTP_REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started_at)


def ingest_counted(result: Any, rejected: int) -> None:
    """Count a batch's outcome (the service's IngestResult, plus the points the parser rejected)."""
    INGEST_POINTS.labels("accepted").inc(result.accepted)
    INGEST_POINTS.labels("duplicate").inc(result.duplicates)
    INGEST_POINTS.labels("rejected").inc(rejected)


def ingest_flagged(points_flags: Iterable[list[str]]) -> None:
    """Count each accepted point's quality flags (tracking/quality.py)."""
    for flags in points_flags:
        for flag in flags:
            INGEST_FLAGGED_POINTS.labels(flag).inc()


def ingest_lag_after_commit(recorded_ats: Iterable[dt.datetime]) -> None:
    """When the current transaction commits, observe each point's device-time-to-commit lag."""
    from django.db import transaction

    recorded_ats = list(recorded_ats)

    def observe() -> None:
        now = time.time()
        for recorded_at in recorded_ats:
            INGEST_LAG_SECONDS.observe(max(0.0, now - recorded_at.timestamp()))

    if recorded_ats:
        transaction.on_commit(observe)


def _group_kind(group: str) -> str:
    # Group names are "<kind>.<id>" (order.<id>, notifications.<user>) or "ops": bounded labels.
    return group.split(".", 1)[0]


def publishing(group: str, message: dict[str, Any]) -> dict[str, Any]:
    """Count a group send, and stamp the message so the consumer can time publish to frame."""
    CHANNEL_PUBLISHED.labels(_group_kind(group)).inc()
    return {**message, "published_at": time.time()}


def publish_failed(group: str) -> None:
    CHANNEL_PUBLISH_FAILURES.labels(_group_kind(group)).inc()


def repaired(reason: str) -> None:
    CHANNEL_REPAIRS.labels(reason).inc()


def ws_stream(scope: dict[str, Any]) -> str:
    """orders, ops or notifications, from the socket's path (/ws/<stream>/...)."""
    parts = scope.get("path", "").strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "ws" else "other"


def ws_opened(scope: dict[str, Any]) -> None:
    stream = ws_stream(scope)
    WS_CONNECTS.labels(stream).inc()
    WS_OPEN.labels(stream).inc()
    scope["metrics_open"] = True


def ws_closed(scope: dict[str, Any], code: int | None) -> None:
    stream = ws_stream(scope)
    WS_CLOSES.labels(stream, str(code or 1000)).inc()
    # Only sockets counted as open are counted as closed again (a handshake
    # refused before accept never reached ws_opened).
    if scope.pop("metrics_open", False):
        WS_OPEN.labels(stream).dec()


def ws_denied(scope: dict[str, Any], code: int) -> None:
    if code == CLOSE_UNAUTHENTICATED:
        WS_AUTH_FAILURES.labels(ws_stream(scope)).inc()


def redis_unavailable(use: str) -> None:
    REDIS_UNAVAILABLE.labels(use).inc()


def database_unavailable(kind: str) -> None:
    DATABASE_UNAVAILABLE.labels(kind).inc()


def frame_written(stream: str, message: dict[str, Any]) -> None:
    published_at = message.get("published_at")
    if published_at is not None:
        FRAME_DELAY_SECONDS.labels(stream).observe(max(0.0, time.time() - published_at))


# --- Celery signals -----------------------------------------------------------------

_task_started_at: dict[str, float] = {}


def _task_name(sender: Any) -> str:
    return getattr(sender, "name", None) or str(sender)


def _before_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is not None:
        headers["published_at"] = time.time()


def _prerun(task_id: str, task: Any, **kwargs: Any) -> None:
    now = time.time()
    _task_started_at[task_id] = now
    published_at = getattr(task.request, "published_at", None)
    if published_at is None:
        return
    ready_at = float(published_at)
    eta = getattr(task.request, "eta", None)
    if eta:
        # A countdown task is not waiting before its countdown ends.
        eta_at = dt.datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        ready_at = max(ready_at, eta_at.timestamp())
    CELERY_QUEUE_WAIT_SECONDS.labels(task.name).observe(max(0.0, now - ready_at))


def _postrun(task_id: str, task: Any, **kwargs: Any) -> None:
    started_at = _task_started_at.pop(task_id, None)
    if started_at is not None:
        CELERY_RUN_SECONDS.labels(task.name).observe(time.time() - started_at)


def _outcome(outcome: str) -> Callable[..., None]:
    def handler(sender: Any = None, **kwargs: Any) -> None:
        if outcome == "rejected":
            # task_rejected's sender is the worker's consumer: the task is named in the message.
            message = kwargs.get("message")
            name = (getattr(message, "headers", None) or {}).get("task") or "unknown"
        else:
            name = _task_name(sender)
        CELERY_TASKS.labels(name, outcome).inc()

    return handler


def task_worker_lost(name: str) -> None:
    CELERY_TASKS.labels(name, "worker_lost").inc()


_OUTCOME_HANDLERS: dict[str, Callable[..., None]] = {}


def celery_signals_connect() -> None:
    """Time and count every task: queue wait, run time, success/failure/retry/rejected/revoked."""
    from celery import signals

    signals.before_task_publish.connect(_before_publish, weak=False)
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    for outcome in ("success", "failure", "retry", "rejected", "revoked"):
        handler = _OUTCOME_HANDLERS.setdefault(outcome, _outcome(outcome))
        getattr(signals, f"task_{outcome}").connect(handler, weak=False)


# --- Collectors and exposition ---------------------------------------------------------

_collectors: list[Collector] = []


def collector_register(collector: Collector) -> None:
    """Add a collector (an app's domain gauges) to every scrape of this process."""
    _collectors.append(collector)
    REGISTRY.register(collector)


class CeleryQueueCollector(Collector):
    """Messages waiting in the Celery broker's queues (Redis lists), read at scrape time."""

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "xiaoxiang_celery_queue_length", "Messages waiting in a Celery queue.", labels=["queue"]
        )

    def describe(self):
        # Without describe(), registering would call collect() before settings exist.
        return [self._family()]

    def collect(self):
        from django.conf import settings

        family = self._family()
        if settings.REDIS_URL:
            import redis

            try:
                client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
                for queue in CELERY_QUEUES:
                    family.add_metric([queue], client.llen(queue))
            except redis.RedisError:
                logger.warning("could not read the Celery queue length", exc_info=True)
                return
        yield family


class ChannelBacklogCollector(Collector):
    """Messages this process took from the channel layer that its sockets have not consumed yet."""

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "xiaoxiang_channel_backlog", "Channel-layer messages buffered in this process, not yet consumed."
        )

    def describe(self):
        return [self._family()]

    def collect(self):
        from channels.layers import channel_layers
        from channels_redis.pubsub import RedisPubSubChannelLayer

        family = self._family()
        # Only a layer this process already uses: a scrape must not create one.
        layer = channel_layers.backends.get("default")
        # The pub/sub layer keeps a queue per channel in each event loop's layer
        # (read directly: its attribute proxy needs a running loop); the
        # in-memory layer holds its queues in `channels`.
        if isinstance(layer, RedisPubSubChannelLayer):
            queues = [queue for loop_layer in list(layer._layers.values()) for queue in loop_layer.channels.values()]
        else:
            queues = list(getattr(layer, "channels", {}).values())
        family.add_metric([], sum(queue.qsize() for queue in queues))
        yield family


collector_register(CeleryQueueCollector())
collector_register(ChannelBacklogCollector())


def registry() -> CollectorRegistry:
    """The registry a scrape of this process reads."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed)
    for collector in _collectors:
        summed.register(collector)
    return summed


def scrape_allowed(authorization: str | None) -> bool | None:
    """None: metrics are off (no METRICS_TOKEN); else whether this Authorization header carries the token."""
    token = os.environ.get("METRICS_TOKEN", "")
    if not token:
        return None
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def exposition() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def _metrics_wsgi_app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    allowed = scrape_allowed(environ.get("HTTP_AUTHORIZATION"))
    if environ.get("PATH_INFO") != "/metrics" or allowed is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found.\n"]
    if not allowed:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"Forbidden.\n"]
    body, content_type = exposition()
    start_response("200 OK", [("Content-Type", content_type)])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def metrics_server_start(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics (token required) and /healthz from a daemon thread: the Celery worker has no HTTP server."""
    server = make_server(host, port, _metrics_wsgi_app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    logger.info("metrics on http://%s:%s/metrics", host, port)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request (sync under gunicorn, async under Daphne)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        started_at = time.perf_counter()
        response = self.get_response(request)
        http_observed(request, response.status_code, started_at)
        return response

    async def __acall__(self, request):
        started_at = time.perf_counter()
        response = await self.get_response(request)
        http_observed(request, response.status_code, started_at)
        return response
