"""Scheduling the ETA and alert jobs after a change commits (services call this; tasks never do)."""

import contextlib
import contextvars
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from tracking.tasks import alerts_evaluate, eta_recompute

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


def _order_jobs_enqueue(order_ids: list[str], *, debounced: bool) -> None:
    for order_id in order_ids:
        if not debounced:
            eta_recompute.delay(order_id)
            continue
        # Points can arrive many times a second: alerts look at every batch,
        # the ETA at most once per ETA_DEBOUNCE_SECONDS. Whoever adds the key
        # schedules the recompute for the end of the window, so it sees every
        # point of the window; later batches in the window add nothing.
        alerts_evaluate.delay(order_id)
        window = settings.ETA_DEBOUNCE_SECONDS
        if cache.add(_debounce_key(order_id), 1, timeout=window):
            eta_recompute.apply_async((order_id,), countdown=window)


def order_jobs_after_commit(order_ids: Iterable[str], *, debounced: bool = False) -> None:
    """Schedule the orders' ETA and alert jobs for when the current transaction commits.

    `debounced` is for location ingest; status and stage changes recompute at once.
    """
    if not jobs_enabled():
        return
    order_ids = sorted(set(order_ids))
    if not order_ids:
        return
    # robust: a broker hiccup (or an eager task failing) is logged, never
    # turned into an error for a write that has already committed.
    transaction.on_commit(lambda: _order_jobs_enqueue(order_ids, debounced=debounced), robust=True)
