"""Scheduling the ETA and alert jobs after a change commits (services call this; tasks never do)."""

import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import transaction

from tracking.tasks import eta_recompute

logger = logging.getLogger(__name__)

_suspended: contextvars.ContextVar[bool] = contextvars.ContextVar("tracking_jobs_suspended", default=False)


@contextlib.contextmanager
def jobs_suspended() -> Iterator[None]:
    """Enqueue nothing inside this block (the history generator writes the past, not the present)."""
    token = _suspended.set(True)
    try:
        yield
    finally:
        _suspended.reset(token)


def jobs_enabled() -> bool:
    return settings.TRACKING_JOBS_ENABLED and not _suspended.get()


def _debounce_key(order_id: str) -> str:
    return f"tracking.eta.debounce:{order_id}"


def _order_jobs_enqueue(order_ids: list[str]) -> None:
    for order_id in order_ids:
        eta_recompute.delay(order_id)


def order_jobs_after_commit(order_ids: Iterable[str]) -> None:
    """Schedule the orders' ETA and alert jobs (eta_recompute runs both) for when the current transaction commits.

    For status and stage changes, which recompute at once; GPS points are debounced (below).
    """
    if not jobs_enabled():
        return
    order_ids = sorted(set(order_ids))
    if not order_ids:
        return
    # robust: a broker hiccup (or an eager task failing) is logged, never
    # turned into an error for a write that has already committed.
    transaction.on_commit(lambda: _order_jobs_enqueue(order_ids), robust=True)


def points_debounce_claims(order_ids: Iterable[str]) -> list[tuple[str, int]]:
    """The debounce claims (xiaoxiang.push) for orders that just got GPS points; none when jobs are off.

    Points can arrive many times a second. Whoever wins an order's claim
    schedules eta_recompute for the end of the window, so it sees every point
    of the window; later batches in the window schedule nothing. eta_recompute
    also evaluates the alerts, so they are debounced the same way: the rules
    (tracking.alert_services.order_findings) read the order's recent track
    and the rider's last_seen_at from the database, never the batch, so one
    evaluation at the end of the window sees all it would have seen per
    batch, at most ETA_DEBOUNCE_SECONDS later, for one task instead of one
    per batch. (Taken inside the ingest transaction, so jobs_suspended holds.)
    """
    if not jobs_enabled():
        return []
    return [(_debounce_key(order_id), settings.ETA_DEBOUNCE_SECONDS) for order_id in sorted(set(order_ids))]


def points_jobs_enqueue(claimed: set[str]) -> None:
    """Schedule the ETA (then alerts) at the end of the window of each order whose claim was won."""
    prefix = _debounce_key("")
    for key in sorted(claimed):
        if key.startswith(prefix):
            try:
                eta_recompute.apply_async((key.removeprefix(prefix),), countdown=settings.ETA_DEBOUNCE_SECONDS)
            except Exception:
                # The write has committed: a broker hiccup is logged, never turned into an error.
                logger.exception("scheduling the ETA of %s failed", key)
