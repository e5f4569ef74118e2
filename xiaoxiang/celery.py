"""The Celery app: Redis broker in production, in-process (eager) without REDIS_URL.

Periodic jobs are `app.conf.beat_schedule`: run by `celery -A xiaoxiang beat`
in the production topology, and by `embedded_beat_start` (a daemon thread of
the web process) on the embedded default, where there is no beat process.
"""

import logging
import os
import sys
import tempfile
import threading
import time


def _is_worker_command() -> bool:
    return bool(sys.argv) and os.path.basename(sys.argv[0]).startswith("celery") and "worker" in sys.argv[1:]


# A prefork worker's pool children record metrics: prometheus-client's
# multiprocess mode, chosen before it is first imported (xiaoxiang.metrics).
if _is_worker_command():
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="xiaoxiang-worker-metrics-"))

from celery import Celery, Task, signals  # noqa: E402
from celery.exceptions import Retry, WorkerLostError  # noqa: E402
from celery.worker.request import Request  # noqa: E402

from xiaoxiang import metrics  # noqa: E402
from xiaoxiang.env import env_int  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")

logger = logging.getLogger(__name__)


class CountedRequest(Request):
    """Counts a task whose pool process died under it (kill -9, OOM killer).

    acks_late with reject_on_worker_lost requeues it, and Celery sends no
    signal for that: the child that would have sent task_failure is dead.
    The worker's main process sees it here.
    """

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        error = exc_info.exception
        if isinstance(getattr(error, "exc", error), WorkerLostError):  # (ExceptionWithTraceback wraps it)
            metrics.task_worker_lost(self.task.name)
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class CountedTask(Task):
    Request = CountedRequest


app = Celery("xiaoxiang", task_cls=CountedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Intervals in seconds, overridable from the environment.
app.conf.beat_schedule = {
    # Time-based alerts (offline, late) and resolving alerts of finished orders.
    "alerts-sweep": {"task": "tracking.alerts_sweep", "schedule": env_int("ALERT_SWEEP_SECONDS", 30)},
    # ETAs move while nothing is posted (warehouse time passes, a rider goes quiet).
    "eta-sweep": {"task": "tracking.eta_sweep", "schedule": env_int("ETA_SWEEP_SECONDS", 60)},
    # Relearn the ETA model from the deliveries completed since the last fit.
    "eta-refit": {"task": "tracking.eta_refit", "schedule": env_int("ETA_REFIT_SECONDS", 3600)},
    # Archive completed trajectories, drop expired location partitions, make the next ones.
    "tracking-retention": {
        "task": "tracking.retention_apply",
        "schedule": env_int("TRACKING_RETENTION_SECONDS", 3600),
    },
}

metrics.celery_signals_connect()


@signals.worker_ready.connect
def _metrics_server_start(**kwargs) -> None:
    # The worker has no HTTP server of its own: WORKER_METRICS_PORT gives it one for /metrics.
    port = env_int("WORKER_METRICS_PORT", 0)
    if port:
        metrics.metrics_server_start(port, os.environ.get("WORKER_METRICS_HOST", "127.0.0.1"))


@signals.worker_process_shutdown.connect
def _metrics_child_exit(pid: int | None = None, **kwargs) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


_embedded_lock = threading.Lock()
_embedded_thread: threading.Thread | None = None
# The first refit runs this soon after start-up, so a fresh demo uses its history at once.
EMBEDDED_FIRST_RUN_SECONDS = 5.0


def _is_server_process() -> bool:
    """Daphne (or runserver) serving requests, not a test run, a shell or a management command."""
    if "pytest" in sys.modules:
        return False
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program == "daphne" or sys.argv[0].endswith(os.path.join("daphne", "__main__.py")):
        return True
    return len(sys.argv) > 1 and sys.argv[1] == "runserver"


def _embedded_loop(schedule: dict[str, dict]) -> None:
    from django.db import close_old_connections

    # Task modules are imported lazily; register them before looking any up.
    app.loader.import_default_modules()
    start = time.monotonic()
    due = {name: start + min(float(entry["schedule"]), EMBEDDED_FIRST_RUN_SECONDS) for name, entry in schedule.items()}
    due["eta-refit"] = start + EMBEDDED_FIRST_RUN_SECONDS
    while True:
        now = time.monotonic()
        for name, entry in schedule.items():
            if now < due[name]:
                continue
            due[name] = now + float(entry["schedule"])
            try:
                # apply(): run here and now, whatever the broker settings say.
                app.tasks[entry["task"]].apply(throw=True)
            except Retry as retry:
                # A transient error (SQLite busy, say): the next round runs it again.
                logger.warning("embedded periodic job %s will run again: %s", name, retry)
            except Exception:
                logger.exception("embedded periodic job %s failed", name)
            finally:
                close_old_connections()
        time.sleep(1.0)


def embedded_beat_start() -> bool:
    """Start the in-process timer once, only in a web process of the embedded default (no REDIS_URL)."""
    global _embedded_thread
    from django.conf import settings

    if settings.REDIS_URL or not settings.TRACKING_JOBS_ENABLED or not _is_server_process():
        return False
    with _embedded_lock:
        if _embedded_thread is not None:
            return False
        _embedded_thread = threading.Thread(
            target=_embedded_loop, args=(dict(app.conf.beat_schedule),), name="embedded-beat", daemon=True
        )
        _embedded_thread.start()
    logger.info("embedded beat started: %s", ", ".join(app.conf.beat_schedule))
    return True
