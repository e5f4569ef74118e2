"""Celery tasks for ETAs and alerts: thin, id-taking, safe to run twice.

Services schedule them through tracking.jobs, which enqueues only once the
current transaction commits; tasks never import it. Without REDIS_URL they
run in-process (CELERY_TASK_ALWAYS_EAGER); the periodic ones then run on the
embedded timer (xiaoxiang.celery.embedded_beat_start) instead of celery beat.
"""

import logging

from celery import shared_task
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orders.models import Order, OrderStatus
from tracking.alert_services import order_alerts_evaluate, orders_needing_watch
from tracking.eta_services import eta_model_refit, order_eta_refresh
from tracking.retention import tracking_retention_apply

logger = logging.getLogger(__name__)

# Only errors that a retry can fix: the database or Redis briefly unreachable.
# Anything else is a bug, and retrying it would only repeat it.
TRANSIENT_ERRORS = (OperationalError, RedisConnectionError, RedisTimeoutError)

TASK_OPTIONS = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 5,
    "soft_time_limit": 20,
    "time_limit": 30,
    # A worker killed mid-task leaves the message unacknowledged: it is
    # redelivered (requeued at once when the pool child dies, after the broker
    # visibility timeout when the whole worker dies). The tasks are idempotent.
    "acks_late": True,
    "reject_on_worker_lost": True,
}
SWEEP_OPTIONS = {**TASK_OPTIONS, "soft_time_limit": 50, "time_limit": 60}
# Jobs that may outlast the broker's visibility timeout (120 s) are acknowledged on receipt, so a
# second worker is not handed one mid-run; the next hourly run does what a lost one did not.
ACKED_ON_RECEIPT = {"acks_late": False, "reject_on_worker_lost": False}
REFIT_OPTIONS = {**TASK_OPTIONS, "soft_time_limit": 240, "time_limit": 300, **ACKED_ON_RECEIPT}
RETENTION_OPTIONS = {**TASK_OPTIONS, "soft_time_limit": 1700, "time_limit": 1800, **ACKED_ON_RECEIPT}


@shared_task(name="tracking.eta_recompute", **TASK_OPTIONS)
def eta_recompute(order_id: str) -> bool:
    """Refresh one order's ETA, then its alerts (a new ETA may predict lateness)."""
    changed = order_eta_refresh(order_id=order_id)
    order_alerts_evaluate(order_id=order_id)
    return changed


@shared_task(name="tracking.alerts_evaluate", **TASK_OPTIONS)
def alerts_evaluate(order_id: str) -> dict[str, str]:
    return order_alerts_evaluate(order_id=order_id)


@shared_task(name="tracking.eta_refit", **REFIT_OPTIONS)
def eta_refit() -> int:
    return eta_model_refit().pk


@shared_task(name="tracking.eta_sweep", **SWEEP_OPTIONS)
def eta_sweep() -> int:
    """Periodic: recompute every open order's ETA (warehouse time passes even when nothing is posted)."""
    order_ids = list(
        Order.objects.filter(status__in=[OrderStatus.PAID, OrderStatus.DELIVERING]).values_list("pk", flat=True)
    )
    for order_id in order_ids:
        eta_recompute.delay(order_id)
    return len(order_ids)


@shared_task(name="tracking.alerts_sweep", **SWEEP_OPTIONS)
def alerts_sweep() -> int:
    """Periodic: the time-based alerts (offline, late) and resolving alerts of finished orders."""
    order_ids = orders_needing_watch()
    for order_id in order_ids:
        alerts_evaluate.delay(order_id)
    return len(order_ids)


@shared_task(name="tracking.retention_apply", **RETENTION_OPTIONS)
def retention_apply() -> dict[str, object]:
    """Periodic: archive completed trajectories, then drop the location events past retention."""
    result = tracking_retention_apply()
    return {"archived": result.archived, "dropped_partitions": result.dropped_partitions, "deleted": result.deleted}
