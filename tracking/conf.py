"""Realtime knobs, read from Django settings at use time (so tests can shorten them)."""

from django.conf import settings

DEFAULTS = {
    # A socket that has not authenticated within this many seconds is closed 4401.
    "WS_AUTH_TIMEOUT_SECONDS": 10.0,
    # Heartbeat interval; consumers also re-join their groups (group_expiry) on each beat.
    "WS_HEARTBEAT_SECONDS": 20.0,
    # Between beats, an order socket glances at the cached order version this often
    # (no database) and repairs a publish still missing one glance later.
    "WS_CATCH_UP_SECONDS": 5.0,
    # Open sockets per user and per client IP, counted in Redis across daphne processes.
    "WS_MAX_CONNECTIONS_PER_USER": 20,
    "WS_MAX_CONNECTIONS_PER_IP": 500,
    # Client messages per socket: a burst of this many, refilled at this rate per second.
    "WS_MAX_MESSAGES_PER_SECOND": 10,
    # Largest client frame, in bytes (clients only send auth and resync).
    "WS_MAX_FRAME_BYTES": 4096,
    # A resync that would replay more events than this answers with a fresh snapshot.
    "WS_RESYNC_MAX_EVENTS": 100,
    # GET /events/ page size, and the ceiling of its `limit` parameter.
    "EVENTS_PAGE_SIZE": 100,
    "EVENTS_PAGE_MAX": 500,
    # GET /poll/: default and maximum wait.
    "POLL_DEFAULT_TIMEOUT_SECONDS": 25.0,
    "POLL_MAX_TIMEOUT_SECONDS": 30.0,
    # While waiting, a poll glances at the cached order version this often (no database).
    "POLL_RECHECK_SECONDS": 2.0,
}


def realtime_setting(name: str):
    return getattr(settings, name, DEFAULTS[name])


def connection_slot_ttl() -> float:
    """How long a socket's connection slot lives unless its heartbeat refreshes it.

    Covers daphne processes that die without running disconnect: their slots
    lapse instead of locking users out forever.
    """
    return realtime_setting("WS_HEARTBEAT_SECONDS") * 3 + 5


# --- Background jobs: ETA and alerts (tracking/eta_services.py, alert_services.py, tasks.py) ---
# Each can be overridden in settings (settings.py reads them from the environment).
JOBS_DEFAULTS = {
    # Master switch for enqueuing jobs after commit and for the embedded timer.
    # Off in the test suite (tests that exercise jobs turn it on): an ETA event
    # after every pay/stage would shift the versions other tests assert.
    "TRACKING_JOBS_ENABLED": True,
    # At most one ETA recompute per order in this many seconds, however many points arrive.
    "ETA_DEBOUNCE_SECONDS": 3,
    # The stored ETA only moves (and an `eta` event is recorded) when it changes by this much.
    "ETA_MIN_CHANGE_SECONDS": 30,
    # A move of this much becomes a notification to the customer.
    "ETA_NOTIFY_CHANGE_SECONDS": 300,
    # Alert thresholds (tracking/alerts.py). Periodic jobs: beat_schedule in xiaoxiang/celery.py.
    "ALERT_STALL_SECONDS": 240,
    "ALERT_STALL_RADIUS_M": 30,
    "ALERT_DEVIATION_AWAY_POINTS": 4,
    "ALERT_DEVIATION_AWAY_MIN_M": 100,
    "ALERT_DEVIATION_CORRIDOR_M": 800,
    "ALERT_OFFLINE_SECONDS": 180,
    "ALERT_LATE_GRACE_SECONDS": 60,
}


def jobs_setting(name: str):
    return getattr(settings, name, JOBS_DEFAULTS[name])
