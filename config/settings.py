"""Settings, all read from the environment (the README has the table).

Two shapes share this file:
- the normal one: PostgreSQL, Redis for Celery, the channel layer and the cache;
- the embedded one (``ENGINE_EMBEDDED=1``, chosen by ``make run`` when neither
  service is reachable): SQLite, in-memory channel layer, tasks run in-process.
"""

import logging
from datetime import timedelta
from pathlib import Path

import environ
import structlog
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

EMBEDDED = env.bool("ENGINE_EMBEDDED", default=False)

DEBUG = env.bool("DEBUG", default=False)
# The development key is public (it is in this file): with it anyone can forge WebSocket
# tokens, unsubscribe and recovery links and admin sessions. Only a debug run (`make run`)
# or an explicit opt-in (the test suite and mypy, through config.settings_dev) may use it;
# anything else refuses to start. `manage.py check --deploy` also rejects it (config.checks).
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-in-production"  # noqa: S105
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or env.bool("ALLOW_DEV_SECRET_KEY", default=False)):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`; the public "
            "development key is used only with DEBUG=1 or ALLOW_DEV_SECRET_KEY=1."
        )
    SECRET_KEY = DEV_SECRET_KEY
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Where providers' callbacks (Twilio status, unsubscribe links) reach this service.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Where browsers open WebSockets (ws:// or wss://, no path), when daphne is not behind the
# same URL as the HTTP server: `make run` points it at daphne's port. Empty: the page's
# own host, for one proxy routing /ws/ to daphne (docs/operations.md#process-layout).
PUBLIC_WS_URL = env("PUBLIC_WS_URL", default="").rstrip("/")
# Hosts (and their subdomains) links in message content may point to; empty = any
# http(s) host. PUBLIC_BASE_URL's host is always allowed (templates/content.py).
CONTENT_URL_HOSTS = env.list("CONTENT_URL_HOSTS", default=[])

INSTALLED_APPS = [
    "daphne",
    "config.apps.EngineConfig",
    "config.apps.EngineAdminConfig",  # django.contrib.admin with the dashboard as its index
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "axes",
    "channels",
    "anymail",
    "django_structlog",
    "stores",
    "interventions",
    "django_celery_beat",
    "campaigns",
    "tracking",
    "notifications",
    "realtime",
    "templates.apps.MessageTemplatesConfig",
    "outbound",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.observability.RequestLogMiddleware",
    # Inside django-structlog's middleware: it clears the bound request id on the way out.
    "config.observability.RequestIdHeaderMiddleware",
    "config.errors.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last of the project's: turns a locked-out admin login into its 429 (config.admin_login).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
if EMBEDDED:
    DATABASES = {
        "default": env.db_url(
            "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'engine.sqlite3'}"
        )
    }
else:
    DATABASES = {
        "default": env.db_url(
            "DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/intervention_engine"
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI every thread that touches the ORM opens its own connection;
        # without the pool they pile up until Postgres refuses new ones.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        }
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.postgresql", "django_prometheus.db.backends.postgresql"
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker ---------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Connect storms open many sockets at once; redis-py's async default of 100 is too small.
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=1000)

# Every API request reads the cache (throttle counters): a Redis that accepts connections
# but stops answering must cost a request at most this long, not hang its thread.
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=2.0)

CACHES: dict[str, dict[str, object]]
CHANNEL_LAYERS: dict[str, dict[str, object]]
if EMBEDDED:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "ie",
            "OPTIONS": {
                "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
                "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            },
        }
    }
    # One PUBLISH per send instead of the list-based layer's four round trips:
    # measured p99 12 ms vs 101-133 ms at 100 messages/s on this machine class.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # The subscriber polls with its own short timeout, so a socket timeout bounds
            # publishes and reconnects without cutting idle subscriptions.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
                        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
                    }
                ],
                "prefix": "ie",
            },
        }
    }

# --- Celery ---------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = EMBEDDED or env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=45)
CELERY_TASK_DEFAULT_QUEUE = "scheduled"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers an unacked task after this long; no task or countdown may exceed it
# (see docs/delivery.md for why scheduled sends do not use long ETAs).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "release-due-interventions": {
        "task": "interventions.tasks.release_due_interventions",
        "schedule": env.float("SCHEDULER_INTERVAL_SECONDS", default=5.0),
        "options": {"queue": "scheduled", "expires": 30},
    },
    "sweep-stuck-interventions": {
        "task": "interventions.tasks.sweep_stuck_interventions",
        "schedule": env.float("SWEEPER_INTERVAL_SECONDS", default=60.0),
        "options": {"queue": "scheduled", "expires": 120},
    },
    # Rollups, recounted from the raw rows (docs/analytics.md): the last days often
    # (opens and clicks come within hours), the attribution window less often (orders
    # come up to 72 h later), a month daily (late stragglers).
    "refresh-recent-rollups": {
        "task": "tracking.tasks.refresh_recent_rollups",
        "schedule": env.float("ROLLUP_REFRESH_SECONDS", default=60.0),
        "options": {"queue": "scheduled", "expires": 120},
    },
    "refresh-window-rollups": {
        "task": "tracking.tasks.refresh_recent_rollups",
        "schedule": env.float("ROLLUP_WINDOW_REFRESH_SECONDS", default=600.0),
        "kwargs": {"days": env.int("ROLLUP_WINDOW_DAYS", default=4)},
        "options": {"queue": "scheduled", "expires": 1200},
    },
    "refresh-older-rollups": {
        "task": "tracking.tasks.refresh_recent_rollups",
        "schedule": 86400.0,
        "kwargs": {"days": env.int("ROLLUP_DAILY_DAYS", default=35)},
        "options": {"queue": "scheduled", "expires": 3600},
    },
    "follow-campaign-calendar": {
        "task": "campaigns.tasks.follow_campaign_calendar",
        "schedule": 60.0,
        "options": {"queue": "scheduled", "expires": 60},
    },
    "refresh-campaign-results": {
        "task": "campaigns.tasks.refresh_all_campaign_results",
        "schedule": env.float("RESULTS_REFRESH_MINUTES", default=15.0) * 60,
        "options": {"queue": "scheduled", "expires": 600},
    },
    "dispatch-outbox": {
        "task": "outbound.tasks.dispatch_outbox",
        "schedule": env.float("WEBHOOK_DISPATCH_INTERVAL_SECONDS", default=2.0),
        "options": {"queue": "webhooks", "expires": 30},
    },
    "prune-webhooks": {
        "task": "outbound.tasks.prune_webhooks",
        "schedule": env.float("RETENTION_INTERVAL_SECONDS", default=3600.0),
        "options": {"queue": "webhooks", "expires": 600},
    },
    "prune-expired-rows": {
        "task": "interventions.tasks.prune_expired_rows",
        "schedule": env.float("RETENTION_INTERVAL_SECONDS", default=3600.0),
        "options": {"queue": "scheduled", "expires": 600},
    },
}
# Beat reads its schedule from the database (django-celery-beat), so a campaign's
# schedule is a row the admin shows and edits, and it survives restarts. The static
# entries above are copied into it at beat start.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Scheduled campaigns (docs/campaigns.md): shoppers decided per transaction, how long a
# worker holds a run before another may take it over, and the run task's time limit.
CAMPAIGN_RUN_CHUNK = env.int("CAMPAIGN_RUN_CHUNK", default=1000)
CAMPAIGN_RUN_LEASE_SECONDS = env.int("CAMPAIGN_RUN_LEASE_SECONDS", default=300)
CAMPAIGN_RUN_TIME_LIMIT = env.int("CAMPAIGN_RUN_TIME_LIMIT", default=1800)
# A broker that is down must not hold an API request for long: the row is already
# committed and the sweeper re-dispatches it.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

# --- REST API -------------------------------------------------------------
# Reverse proxies in front of the web processes: the client address used for throttles
# and the admin lockout is then taken from X-Forwarded-For, that many hops from the right.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
# Requests per API key, and per client address for requests without a valid key
# (stores/api/throttling.py), counted in the Redis cache; "0" turns one off.
API_THROTTLE_RATES = {
    "api_key": env("API_RATE_PER_KEY", default="6000/min"),
    "unauthenticated": env("API_RATE_UNAUTHENTICATED", default="60/min"),
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["stores.auth.StoreApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["stores.auth.IsStoreClient"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.CheckedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["stores.api.throttling.ApiKeyThrottle"],
    # 0, not None: None makes DRF take the caller from X-Forwarded-For, which any client sets.
    "NUM_PROXIES": NUM_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cart-recovery intervention engine API",
    "DESCRIPTION": (
        "Services send cart events and predictions; the engine decides, delivers and "
        "tracks interventions. Authenticate with `Authorization: Api-Key <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # One name per choice set, shared by every endpoint that uses it.
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "stores.models.CHANNEL_CHOICES",
        "RequestedChannelEnum": "interventions.models.REQUESTED_CHANNEL_CHOICES",
        "CampaignChannelEnum": "campaigns.models.CampaignChannel",
        "InterventionStatusEnum": "interventions.models.Status",
    },
}
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"
# Larger bodies are a 413. Sized for the biggest legitimate request, a full batch:
# INTERVENTION_BATCH_MAX (1,000) triggers with a profile and a cart of ~20 lines (image
# and product URLs, ~250 bytes a line) weigh ~5.5 KB each, 5.5 MB in all (measured in
# tests/config/test_bad_input_at_the_edge.py); 10 MiB leaves room for bigger carts.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=10 * 1024 * 1024)
# Requests a web process holds (running or waiting for a thread) before it answers 503
# with Retry-After instead of queueing (config/handlers.py). At ~10 ms of CPU a request,
# 64 queued is well under a second of waiting.
MAX_IN_FLIGHT_REQUESTS = env.int("MAX_IN_FLIGHT_REQUESTS", default=64)
# Seconds a web process remembers a verified API key and its store (stores/api_keys.py:
# revocations and store edits through the app reach every process at once; 0 = off).
# Off in embedded mode: its revocation messages travel through Redis, which it has not.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=0.0 if EMBEDDED else 5.0)

# --- Admin login lockout (django-axes, config/admin_login.py) ---------------
AUTHENTICATION_BACKENDS = [
    "config.admin_login.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.admin_login.locked_out"
AXES_IPWARE_PROXY_COUNT = NUM_PROXIES or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if NUM_PROXIES else ("REMOTE_ADDR",)
)

# --- Static files, i18n ---------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging: JSON lines with the request id ------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="json")  # json | console
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_USER_ID_FIELD = None
# One line per request: request_finished carries the request id, address, method, path
# and status; request_started repeated most of it (~30 us of CPU a line, issue 12).
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
# Keep the id a gateway or calling service already assigned, so one id spans services.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = env.bool("TRUST_UPSTREAM_REQUEST_ID", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processor": (
                structlog.processors.JSONRenderer()
                if LOG_FORMAT == "json"
                else structlog.dev.ConsoleRenderer(colors=False)
            ),
            "foreign_pre_chain": [
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
            ],
        },
    },
    "filters": {"benign_pubsub_cleanup": {"()": "config.log_filters.BenignPubSubCleanup"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        "channels_redis.pubsub": {"filters": ["benign_pubsub_cleanup"]},
    },
}

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.filter_by_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    cache_logger_on_first_use=True,
)

# --- Security for production ---------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
APPEND_SLASH = False

# --- Pipeline -------------------------------------------------------------
DELIVERY_MAX_RETRIES = env.int("DELIVERY_MAX_RETRIES", default=6)
DELIVERY_RETRY_BASE_DELAY = env.float("DELIVERY_RETRY_BASE_DELAY", default=2.0)
# Kept well under CELERY_VISIBILITY_TIMEOUT and SWEEP_QUEUED_AFTER_SECONDS.
DELIVERY_RETRY_MAX_DELAY = env.float("DELIVERY_RETRY_MAX_DELAY", default=300.0)
DELIVERY_SOFT_TIME_LIMIT = env.int("DELIVERY_SOFT_TIME_LIMIT", default=30)
SWEEP_QUEUED_AFTER_SECONDS = env.float("SWEEP_QUEUED_AFTER_SECONDS", default=600.0)
SWEEP_SENDING_AFTER_SECONDS = env.float("SWEEP_SENDING_AFTER_SECONDS", default=120.0)
SWEEP_WEBSOCKET_QUEUED_AFTER_SECONDS = env.float(
    "SWEEP_WEBSOCKET_QUEUED_AFTER_SECONDS", default=30.0
)
# Events accepted in bulk and still undecided this long lost their decide_events task:
# enqueued again. Longer than a backlog of the decisioning queue should last, since the
# sweep does not know a queued task from a lost one (a duplicate is harmless, not free).
SWEEP_UNDECIDED_EVENTS_AFTER_SECONDS = env.float(
    "SWEEP_UNDECIDED_EVENTS_AFTER_SECONDS", default=300.0
)
ATTRIBUTION_WINDOW_HOURS = env.int("ATTRIBUTION_WINDOW_HOURS", default=72)
# Lifetimes of the sealed link tokens in messages (docs/operations.md#link-tokens): the
# cart link (a reminder sequence is days, not months), the open pixel (an open after
# that says nothing about the campaign), and one-click unsubscribe (CAN-SPAM asks for
# 30 days at least; people unsubscribe from old emails, and the token only opts out).
RECOVERY_LINK_MAX_AGE_DAYS = env.int("RECOVERY_LINK_MAX_AGE_DAYS", default=14)
OPEN_PIXEL_MAX_AGE_DAYS = env.int("OPEN_PIXEL_MAX_AGE_DAYS", default=90)
UNSUBSCRIBE_LINK_MAX_AGE_DAYS = env.int("UNSUBSCRIBE_LINK_MAX_AGE_DAYS", default=365)
# Experiments (docs/campaigns.md): how often beat recomputes every live campaign's results
# (and applies auto-promotion and bandit re-weighting), and the guards before any verdict.
RESULTS_REFRESH_MINUTES = env.float("RESULTS_REFRESH_MINUTES", default=15.0)
EXPERIMENT_MIN_EXPOSURES_PER_ARM = env.int("EXPERIMENT_MIN_EXPOSURES_PER_ARM", default=100)
EXPERIMENT_MIN_RUNTIME_HOURS = env.float("EXPERIMENT_MIN_RUNTIME_HOURS", default=168.0)
# Thompson sampling's seed; unset in production (fresh entropy), fixed in tests.
BANDIT_RANDOM_SEED = env.int("BANDIT_RANDOM_SEED", default=None)
BANDIT_DRAWS = env.int("BANDIT_DRAWS", default=10_000)
# A repeated open or click of one intervention within this many seconds is recorded but
# flagged duplicate and not counted (mail scanners and double taps; docs/analytics.md).
TRACKING_DEDUPE_SECONDS = env.int("TRACKING_DEDUPE_SECONDS", default=60)
# How far a client's clock may run ahead of ours (or behind the intervention's creation)
# before a reported occurred_at is refused: phones and browsers drift by seconds to
# minutes, a report hours off is a bug or a forgery that would land in another day's figures.
TRACKING_CLOCK_SKEW_SECONDS = env.int("TRACKING_CLOCK_SKEW_SECONDS", default=300)
# Analytics read daily rollups (docs/analytics.md): beat recounts the last
# ROLLUP_RECENT_DAYS store days every ROLLUP_REFRESH_SECONDS, and ROLLUP_WINDOW_DAYS (the
# 72 h attribution window plus a time-zone day) every ROLLUP_WINDOW_REFRESH_SECONDS: a
# recount costs in proportion to the sends of its days (docs/benchmarks.md).
ROLLUP_RECENT_DAYS = env.int("ROLLUP_RECENT_DAYS", default=2)
ROLLUP_WINDOW_DAYS = env.int("ROLLUP_WINDOW_DAYS", default=4)
# Embedded mode runs no beat: recount the asked-for days on each analytics read instead.
ROLLUP_REFRESH_ON_READ = env.bool("ROLLUP_REFRESH_ON_READ", default=EMBEDDED)
# What one message costs per channel, in CHANNEL_COST_CURRENCY: one price for both its
# uses, cost per conversion in /analytics/channels (0 means unknown and is not reported)
# and the per-channel cost caps of campaign budgets. CAMPAIGN_COST_EMAIL/SMS/PUSH, the
# budgets' former names, are read only where the new name is unset; `manage.py check`
# warns while they are set (config.W001).
DEPRECATED_CHANNEL_COST_NAMES = {
    "email": "CAMPAIGN_COST_EMAIL",
    "sms": "CAMPAIGN_COST_SMS",
    "push": "CAMPAIGN_COST_PUSH",
}
CHANNEL_COSTS = {
    "email": env.str("CHANNEL_COST_EMAIL", default=env.str("CAMPAIGN_COST_EMAIL", default="0.001")),
    "sms": env.str("CHANNEL_COST_SMS", default=env.str("CAMPAIGN_COST_SMS", default="0.05")),
    "push": env.str("CHANNEL_COST_PUSH", default=env.str("CAMPAIGN_COST_PUSH", default="0.0001")),
    "websocket": env.str("CHANNEL_COST_WEBSOCKET", default="0"),
}
CHANNEL_COST_CURRENCY = env.str("CHANNEL_COST_CURRENCY", default="EUR")
INTERVENTION_BATCH_MAX = env.int("INTERVENTION_BATCH_MAX", default=1000)
EVENT_BATCH_MAX = env.int("EVENT_BATCH_MAX", default=1000)

# --- Outbound webhooks (docs/webhooks.md) ------------------------------------
# Private, loopback and reserved targets are refused (SSRF) unless this is set: tests and
# development only (settings_dev sets it).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# One sender per endpoint holds this lease; a worker killed mid-post frees it when it ends.
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=60)
WEBHOOK_RETRY_BASE_DELAY = env.float("WEBHOOK_RETRY_BASE_DELAY", default=5.0)
WEBHOOK_RETRY_MAX_DELAY = env.float("WEBHOOK_RETRY_MAX_DELAY", default=3600.0)
# 5 s doubling to an hour: about 16 hours of failures before an endpoint is disabled.
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=25)
WEBHOOK_DISPATCH_BATCH = env.int("WEBHOOK_DISPATCH_BATCH", default=1000)
WEBHOOK_SEND_BATCH = env.int("WEBHOOK_SEND_BATCH", default=200)
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=7)
# Embedded mode runs no beat: relay the outbox after each commit instead of every
# WEBHOOK_DISPATCH_INTERVAL_SECONDS (docs/webhooks.md).
WEBHOOK_RELAY_ON_COMMIT = env.bool("WEBHOOK_RELAY_ON_COMMIT", default=EMBEDDED)

# --- Retention (docs/operations.md#data-protection) ------------------------
# Days each kind of row is kept; 0 keeps it forever. Pruned hourly by beat, oldest first.
RETENTION_DAYS = {
    "cart_events": env.int("RETENTION_CART_EVENTS_DAYS", default=90),
    "delivery_attempts": env.int("RETENTION_DELIVERY_ATTEMPTS_DAYS", default=30),
    "intervention_history": env.int("RETENTION_INTERVENTION_HISTORY_DAYS", default=180),
    "tracking_events": env.int("RETENTION_TRACKING_EVENTS_DAYS", default=400),
    "finished_interventions": env.int("RETENTION_FINISHED_INTERVENTIONS_DAYS", default=400),
    "webhook_receipts": env.int("RETENTION_WEBHOOK_RECEIPTS_DAYS", default=400),
}
# Rows deleted per statement (one short transaction each), and per kind per run.
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)
RETENTION_MAX_ROWS_PER_RUN = env.int("RETENTION_MAX_ROWS_PER_RUN", default=50_000)

# --- Delivery -------------------------------------------------------------
# Transport per channel: "log" (development default: log and record, send nothing)
# or a dotted path to a notifications.transports class.
NOTIFICATION_TRANSPORTS = {
    "email": env("EMAIL_TRANSPORT", default="log"),
    "sms": env("SMS_TRANSPORT", default="log"),
    "push": env("PUSH_TRANSPORT", default="log"),
    # The real one needs Redis (replay streams, pub/sub); the embedded mode has none.
    "websocket": env(
        "WEBSOCKET_TRANSPORT",
        default="log" if EMBEDDED else "realtime.transport.WebSocketTransport",
    ),
}

# --- Real-time WebSocket delivery (docs/websocket-protocol.md) ---------------
WS_HEARTBEAT_SECONDS = env.float("WS_HEARTBEAT_SECONDS", default=25.0)
WS_IDLE_TIMEOUT_SECONDS = env.float("WS_IDLE_TIMEOUT_SECONDS", default=75.0)
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=4096)
# Seconds of a room's frames kept in its Redis Stream for `resume` after a reconnect.
WS_REPLAY_WINDOW = env.int("WS_REPLAY_WINDOW", default=3600)
# Live connections one shopper (one user token's room) may hold, within the store's limit.
WS_MAX_CONNECTIONS_PER_USER = env.int("WS_MAX_CONNECTIONS_PER_USER", default=5)
# Live connections one store token may hold in the store room (a dashboard's tabs), so a
# leaked store token cannot take the store's whole limit either.
WS_MAX_CONNECTIONS_PER_STORE_TOKEN = env.int("WS_MAX_CONNECTIONS_PER_STORE_TOKEN", default=5)
# Per connection: `resume` frames, and `tracking` frames (average per second, burst).
# Frames beyond them get an `error` frame (`rate_limited`) and do nothing.
WS_RESUMES_PER_SECOND = env.float("WS_RESUMES_PER_SECOND", default=1.0)
WS_TRACKING_PER_SECOND = env.float("WS_TRACKING_PER_SECOND", default=5.0)
WS_TRACKING_BURST = env.int("WS_TRACKING_BURST", default=20)
# The same tracking event of one intervention from a websocket within this many seconds
# is recorded once.
WS_TRACKING_DEDUP_SECONDS = env.int("WS_TRACKING_DEDUP_SECONDS", default=30)
WS_TOKEN_DEFAULT_TTL_SECONDS = env.int("WS_TOKEN_DEFAULT_TTL_SECONDS", default=900)
WS_TOKEN_MAX_TTL_SECONDS = env.int("WS_TOKEN_MAX_TTL_SECONDS", default=86400)
# Freeze start-up objects out of the GC and collect less often (docs/benchmarks.md).
WS_GC_FREEZE = env.bool("WS_GC_FREEZE", default=True)
WS_GC_THRESHOLDS = (50_000, 50, 100)
# The demo storefront page and its "simulate abandoned cart" endpoint (`make run` only).
DEMO_STOREFRONT_ENABLED = env.bool("DEMO_STOREFRONT_ENABLED", default=False)

# --- Notification providers (docs/notifications.md) ------------------------
# EMAIL_TRANSPORT / SMS_TRANSPORT / PUSH_TRANSPORT above pick "log" (default) or the
# real adapter: "anymail", "twilio", "fcm". A real one without its credentials is a
# system check error (`manage.py check`), not a crash at import.
EMAIL_ESP = env("EMAIL_ESP", default="postmark")  # postmark | amazon_ses | mailgun | sendgrid
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    default={
        "sendgrid": "anymail.backends.sendgrid.EmailBackend",
        "amazon_ses": "anymail.backends.amazon_ses.EmailBackend",
        "mailgun": "anymail.backends.mailgun.EmailBackend",
        "postmark": "anymail.backends.postmark.EmailBackend",
    }.get(EMAIL_ESP, "django.core.mail.backends.console.EmailBackend"),
)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Cart reminders <reminders@example.com>")
ANYMAIL = {
    "SENDGRID_API_KEY": env("SENDGRID_API_KEY", default=""),
    "MAILGUN_API_KEY": env("MAILGUN_API_KEY", default=""),
    "MAILGUN_SENDER_DOMAIN": env("MAILGUN_SENDER_DOMAIN", default=""),
    "MAILGUN_WEBHOOK_SIGNING_KEY": env("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
    "POSTMARK_SERVER_TOKEN": env("POSTMARK_SERVER_TOKEN", default=""),
    # Postmark's API origin; anymail sends here and the transport's message search asks
    # here (a stub provider in the end-to-end tests).
    "POSTMARK_API_URL": env("POSTMARK_API_URL", default="https://api.postmarkapp.com/"),
    # SES takes boto3's usual AWS_* environment variables.
    "AMAZON_SES_CLIENT_PARAMS": {"region_name": env("AWS_REGION", default="us-east-1")},
    # "user:password" the ESP's webhook URL carries (basic auth), as anymail documents.
    "WEBHOOK_SECRET": env("ANYMAIL_WEBHOOK_SECRET", default=""),
    # (connect, read) seconds for every ESP API call.
    "REQUESTS_TIMEOUT": (3.05, env.float("EMAIL_SEND_TIMEOUT", default=10.0)),
}
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_TIMEOUT = env.float("TWILIO_TIMEOUT", default=10.0)
# Where the SDK sends Messages API calls (a stub provider in the end-to-end tests).
TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", default="https://api.twilio.com")
SMS_MAX_SEGMENTS = env.int("SMS_MAX_SEGMENTS", default=3)
SMS_HELP_TEXT = env(
    "SMS_HELP_TEXT", default="Cart reminders. Reply STOP to unsubscribe, START to resubscribe."
)
FCM_CREDENTIALS_FILE = env("FCM_CREDENTIALS_FILE", default="")
FCM_TIMEOUT = env.float("FCM_TIMEOUT", default=10.0)
# Sends per second per channel, shared by all workers through Redis; 0 turns a limit off.
NOTIFICATION_RATE_LIMITS = {
    "email": env.int("EMAIL_RATE_LIMIT", default=100),
    "sms": env.int("SMS_RATE_LIMIT", default=10),
    "push": env.int("PUSH_RATE_LIMIT", default=500),
}
