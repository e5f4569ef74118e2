"""Settings for the Xiaoxiang order-tracking service.

Everything comes from the environment (DESIGN.md section 2). Unset
DATABASE_URL / REDIS_URL means the embedded default: SQLite, an in-memory
channel layer, a local-memory cache and Celery tasks run in-process.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from xiaoxiang.env import env_bool, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)
HTTPS_ONLY = env_bool("HTTPS_ONLY", not DEBUG)

SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
    SECRET_KEY = "dev-only-insecure-key-xiaoxiang-do-not-use-in-production-0123456789"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is false")

# Fernet keys for encrypted columns, newest first: the first encrypts, all decrypt.
_DEV_FIELD_KEYS = [
    "x8vD0m4V6oE3QvV0oKq9m0lJd3lI7Gf2Yl8b1s2t3uA=",
    "Zk1xY2V4bGFtcGxlLWRldi1vbmx5LWtleS0wMDAwMDA=",
]
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is false")
    FIELD_ENCRYPTION_KEYS = _DEV_FIELD_KEYS
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must hold url-safe base64 Fernet keys (32 bytes), comma-separated"
        ) from None

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "orders",
    "tracking",
    "notifications",
    "access",
    "axes",
]

MIDDLEWARE = [
    # Probes and the scrape answer first: load balancers and Prometheus call by pod address
    # over plain HTTP, which ALLOWED_HOSTS and the HTTPS redirect would refuse.
    "xiaoxiang.health.OpsEndpointsMiddleware",
    "xiaoxiang.metrics.RequestMetricsMiddleware",
    # 503 + Retry-After, not 500, while the database is down (its process_exception runs for every view).
    "xiaoxiang.middleware.DatabaseUnavailableMiddleware",
    # Blocked clients are refused before anything else runs (access/); 401/429 answers count toward bans.
    "access.middleware.BlocklistMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Async-capable WhiteNoise: a sync-only middleware would pin a thread per long-poll.
    "xiaoxiang.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login that django-axes locked out into its 429 answer (access/lockout.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "xiaoxiang.urls"
ASGI_APPLICATION = "xiaoxiang.asgi.application"
WSGI_APPLICATION = "xiaoxiang.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tracking.views.map_context",
                "orders.terminal_views.role_context",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
# SQLite serialises writers: wait for the lock instead of failing, and take
# it when the transaction starts so select_for_update-style sections serialise.
_SQLITE_OPTIONS = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
if DATABASE_URL:
    # Persistent connections (health-checked before reuse): opening one costs
    # more than most of our queries.
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = {**_SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            # A file, not memory, so a live server started by the tests sees it.
            "TEST": {"NAME": BASE_DIR / "db.test.sqlite3"},
            "OPTIONS": _SQLITE_OPTIONS,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, Celery ------------------------------------
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Redis pub/sub: a daphne process subscribes once per group it
            # serves and fans each message out to its own sockets, so a
            # message crosses the network once per process, not once per
            # socket, and nothing queues up in Redis to be dropped. A message
            # published while a subscriber reconnects is missed; the sockets'
            # catch-up check repairs it from the database (docs/realtime.md).
            # (channels-redis's RedisPubSubChannelLayer, going on without Redis while it is away.)
            "BACKEND": "xiaoxiang.layers.PubSubChannelLayer",
            "CONFIG": {
                # More hosts shard the layer: channels and groups are placed by
                # consistent hash (the publisher in xiaoxiang.push uses the same).
                "hosts": [{"address": address} for address in env_list("CHANNEL_LAYER_HOSTS", [REDIS_URL])],
                # Redis pub/sub channels ignore the database number: name the
                # database in the prefix, so deployments (or test runs) sharing
                # a Redis server on different databases never hear each other.
                "prefix": env_str("CHANNEL_LAYER_PREFIX", f"xiaoxiang{urlparse(REDIS_URL).path.strip('/') or '0'}"),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "xiaoxiang.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "xiaoxiang",
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 20
CELERY_TASK_TIME_LIMIT = 30
# An unacked task (worker killed mid-task, broker connection lost) is redelivered after this
# many seconds, by a sweep every 10 s (kombu's default throttle runs it only every 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 120),
    "unacked_restore_throttle": 1,
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"

# --- Auth --------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Dotted hasher paths, first one hashes new passwords (Django's default list when unset).
_HASHERS = env_list("PASSWORD_HASHERS", [])
if _HASHERS:
    PASSWORD_HASHERS = _HASHERS
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/orders/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "xiaoxiang.auth.RoleJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, within the body, depth and text limits below (xiaoxiang/payloads.py).
    "DEFAULT_PARSER_CLASSES": ["xiaoxiang.payloads.JsonBodyParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON", "120/min"),
        "user": env_str("THROTTLE_USER", "600/min"),
        "ingest": env_str("THROTTLE_INGEST", "6000/min"),
        "poll": env_str("THROTTLE_POLL", "120/min"),
    },
    # The client is REMOTE_ADDR, which the entry points set from the trusted proxy only
    # (xiaoxiang/client_ip.py); DRF's default would believe a client's X-Forwarded-For.
    "NUM_PROXIES": 0,
    "EXCEPTION_HANDLER": "xiaoxiang.api.exception_handler",
}
# Untrusted JSON (REST bodies, socket frames) nests at most this deep; the
# largest legitimate body, a GPS batch, is 3 levels deep.
JSON_MAX_DEPTH = 32
# Django's own body limit, also applied to REST JSON bodies (413 beyond); the
# same 1 MiB as nginx's client_max_body_size. A 500-point GPS batch is ~100 kB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 10)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "ALGORITHM": "HS256",
    "UPDATE_LAST_LOGIN": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Xiaoxiang order tracking API",
    "DESCRIPTION": "Orders, warehouse stages, rider GPS ingest and live tracking (DESIGN.md section 4).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed sidecar package, not a CDN: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Domain settings --------------------------------------------------------
DELIVERY_PROMISE_MINUTES = env_int("DELIVERY_PROMISE_MINUTES", 45)
LOCATION_MAX_FUTURE_SECONDS = env_int("LOCATION_MAX_FUTURE_SECONDS", 300)
LOCATION_BATCH_MAX = 500
RIDER_MAX_ACTIVE_ORDERS = env_int("RIDER_MAX_ACTIVE_ORDERS", 3)
SNAPSHOT_CACHE_SECONDS = 3600
MAP_TILE_URL = env_str("MAP_TILE_URL", "")
# How often the rider web app (/rider/) reports its position.
RIDER_REPORT_SECONDS = env_int("RIDER_REPORT_SECONDS", 15)

# Background jobs: ETA and alerts (tracking/jobs.py, tasks.py, eta_services.py, alert_services.py).
# Periodic jobs: beat_schedule in xiaoxiang/celery.py.
# Master switch for enqueuing jobs after commit and for the embedded timer. Off
# in the test suite (tests that exercise jobs turn it on): an ETA event after
# every pay/stage would shift the versions other tests assert.
TRACKING_JOBS_ENABLED = env_bool("TRACKING_JOBS_ENABLED", True)
# At most one ETA recompute per order in this many seconds, however many points arrive.
ETA_DEBOUNCE_SECONDS = env_int("ETA_DEBOUNCE_SECONDS", 3)
# The stored ETA only moves (and an `eta` event is recorded) when it changes by this much.
ETA_MIN_CHANGE_SECONDS = env_int("ETA_MIN_CHANGE_SECONDS", 30)
# A move of this much becomes a notification to the customer.
ETA_NOTIFY_CHANGE_SECONDS = env_int("ETA_NOTIFY_CHANGE_SECONDS", 300)
# Alert thresholds (the rules: tracking/alerts.py).
ALERT_STALL_SECONDS = env_int("ALERT_STALL_SECONDS", 240)
ALERT_STALL_RADIUS_M = env_int("ALERT_STALL_RADIUS_M", 30)
ALERT_DEVIATION_AWAY_POINTS = env_int("ALERT_DEVIATION_AWAY_POINTS", 4)
ALERT_DEVIATION_AWAY_MIN_M = env_int("ALERT_DEVIATION_AWAY_MIN_M", 100)
ALERT_DEVIATION_CORRIDOR_M = env_int("ALERT_DEVIATION_CORRIDOR_M", 800)
ALERT_OFFLINE_SECONDS = env_int("ALERT_OFFLINE_SECONDS", 180)
ALERT_LATE_GRACE_SECONDS = env_int("ALERT_LATE_GRACE_SECONDS", 60)
# GPS data quality (the rule: tracking/quality.py). Such points are stored, flagged, and never move the
# live position, the ETA or alerts: accuracy worse than this many metres; an implied speed from the rider's
# previous accepted point above this (m/s; 50 = 180 km/h); that previous point is compared only when it is
# at most this many seconds away, so one wrong but unflagged point cannot hold the position any longer.
GPS_MAX_ACCURACY_M = env_int("GPS_MAX_ACCURACY_M", 100)
GPS_MAX_SPEED_MPS = env_int("GPS_MAX_SPEED_MPS", 50)
GPS_SPEED_WINDOW_SECONDS = env_int("GPS_SPEED_WINDOW_SECONDS", 120)
# Location events of orders created longer ago are dropped (whole partitions on PostgreSQL); completed
# orders keep a compact trajectory (tracking/retention.py). Status, stage, ETA and alert events stay.
TRACKING_RETENTION_DAYS = env_int("TRACKING_RETENTION_DAYS", 90)

# --- Internationalisation ---------------------------------------------------
LANGUAGE_CODE = "zh-hans"
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- Static files ------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # No manifest: pages render even before collectstatic (tests, first run).
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
# Daphne serves static files itself through WhiteNoise, collected or not.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "noreply@xiaoxiang.example")

# --- Security ----------------------------------------------------------------
SECURE_SSL_REDIRECT = HTTPS_ONLY
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_HSTS_SECONDS = 31536000 if HTTPS_ONLY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = HTTPS_ONLY
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # One line per task run (many per GPS point) buries everything else.
        "celery.app.trace": {"level": "WARNING"},
    },
}

# Realtime sockets (xiaoxiang/sockets.py, tracking/consumers.py) and the stream reads (tracking/api/stream.py).
# A socket that has not authenticated within this many seconds is closed 4401.
WS_AUTH_TIMEOUT_SECONDS = env_int("WS_AUTH_TIMEOUT_SECONDS", 10)
# Heartbeat interval; consumers also re-join their groups (group_expiry) on each beat.
WS_HEARTBEAT_SECONDS = env_int("WS_HEARTBEAT_SECONDS", 20)
# Between beats, an order socket glances at the cached order version this often
# (no database) and repairs a publish still missing one glance later.
WS_CATCH_UP_SECONDS = env_int("WS_CATCH_UP_SECONDS", 5)
# Open sockets per user and per client IP, counted in Redis across daphne processes.
WS_MAX_CONNECTIONS_PER_USER = env_int("WS_MAX_CONNECTIONS_PER_USER", 20)
WS_MAX_CONNECTIONS_PER_IP = env_int("WS_MAX_CONNECTIONS_PER_IP", 500)
# Client messages per socket: a burst of this many, refilled at this rate per second.
WS_MAX_MESSAGES_PER_SECOND = env_int("WS_MAX_MESSAGES_PER_SECOND", 10)
# Largest client frame, in bytes (clients only send auth and resync).
WS_MAX_FRAME_BYTES = env_int("WS_MAX_FRAME_BYTES", 4096)
# A resync that would replay more events than this answers with a fresh snapshot.
WS_RESYNC_MAX_EVENTS = env_int("WS_RESYNC_MAX_EVENTS", 100)
# /ws/ops/ sends the riders that moved at most this often, in one frame (tracking/ops_feed.py).
OPS_FLUSH_SECONDS = 1.0
# GET /events/ page size, and the ceiling of its `limit` parameter.
EVENTS_PAGE_SIZE = 100
EVENTS_PAGE_MAX = 500
# GET /poll/: default and maximum wait, and how often a waiting poll glances at
# the cached order version (no database).
POLL_DEFAULT_TIMEOUT_SECONDS = 25.0
POLL_MAX_TIMEOUT_SECONDS = 30.0
POLL_RECHECK_SECONDS = 2.0

# Abuse controls (access/, docs/operations.md "Abuse controls").
# Peers whose X-Real-IP names the client (nginx on this host by default): addresses or CIDR ranges.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", ["127.0.0.1", "::1"])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an address or a CIDR range") from None
# Each process re-reads the blocklist this often (and at once after a save in that process).
ACCESS_BLOCKLIST_REFRESH_SECONDS = env_int("ACCESS_BLOCKLIST_REFRESH_SECONDS", 5)
# This many 401/429 answers to one client address within the window ban it for ACCESS_AUTO_BAN_SECONDS (0: off).
ACCESS_AUTO_BAN_THRESHOLD = env_int("ACCESS_AUTO_BAN_THRESHOLD", 50)
ACCESS_AUTO_BAN_WINDOW_SECONDS = env_int("ACCESS_AUTO_BAN_WINDOW_SECONDS", 60)
ACCESS_AUTO_BAN_SECONDS = env_int("ACCESS_AUTO_BAN_SECONDS", 900)
# Login brute force (django-axes, on /api/auth/token/ and /accounts/login/): this many failures for one
# username from one address lock that pair out for the cool-off, answered 429 (access/lockout.py).
AUTHENTICATION_BACKENDS = ["access.backends.LoginLockoutBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "xiaoxiang.client_ip.request_client_ip"
AXES_LOCKOUT_CALLABLE = "access.lockout.lockout_response"
# No row per successful login (a write on every token request); failures are still recorded.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
