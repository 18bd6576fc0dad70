"""Archangel settings: one module, driven by environment variables.

With no environment at all the whole system runs on Python alone: SQLite under
``var/``, a file-system Celery broker and a file-based cache. ``DATABASE_URL``
switches to PostgreSQL, ``REDIS_URL`` to Redis for the broker and the cache.
Every variable is listed in ``.env.example`` and in the README.
"""

import base64
import hashlib
import ipaddress
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from archangel.env import env_bool, env_choice, env_float, env_int, env_list, env_str, env_url
from archangel.logging import log_format, logging_config
from tasks_app import scoring as _scoring

BASE_DIR = Path(__file__).resolve().parent.parent
# Run-time state of the embedded mode (SQLite file, broker folders, cache, mail); git-ignored.
VAR_DIR = Path(env_str("ARCHANGEL_VAR_DIR") or BASE_DIR / "var")

# "development" (the default: `make run`, tests) or "production" (strict: every
# secret must come from the environment and the deploy checks must pass).
ENVIRONMENT = env_choice("DJANGO_ENV", "development", {"development", "production"})
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be false when DJANGO_ENV=production")

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_ENV=production")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"  # noqa: S105
elif PRODUCTION and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters with at least 5 distinct ones")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DJANGO_ENV=production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "archangel.admin_site.ArchangelAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "django_celery_beat",
    "django_prometheus",
    "tasks_app",
    "providers_app",
    "outbox_app",
    "archangel.audit",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # First of ours, so every later log line of the request carries its id.
    "archangel.logging.RequestIdMiddleware",
    "archangel.middleware.ApiErrorEnvelopeMiddleware",
    "archangel.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Provider webhooks and token-authenticated API requests stop here: nothing below is of use to them.
    "archangel.middleware.FastPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: audit entries name the request's user (DRF sets it later, on the same request).
    "archangel.audit.context.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "archangel.urls"
WSGI_APPLICATION = "archangel.wsgi.application"

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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
POSTGRES_ENGINE = "archangel.postgresql"
DATABASE_URL = env_url("DATABASE_URL", {"postgres", "postgresql", "pgsql", "sqlite"})
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(
            DATABASE_URL,
            # Persistent connections: a connection is reused for up to 10 minutes
            # and checked before reuse, so a restarted server costs one retry.
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600, minimum=0),
            conn_health_checks=True,
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL could not be parsed: {exc}") from None
else:
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "archangel.sqlite3"}
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share one SQLite file: WAL lets readers
    # run beside the single writer, IMMEDIATE transactions take the write lock up
    # front (no lock upgrade deadlocks) and busy_timeout waits instead of failing.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
if _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with the per-request health check skipped on a connection that served a
    # request within DATABASE_HEALTH_CHECK_WINDOW seconds (archangel/postgresql/base.py).
    _db["ENGINE"] = POSTGRES_ENGINE
    # Server-side prepared statements for the statements sent with server-side binding (the hot
    # paths' RawCursor/psycopg cursors in archangel/db.py; Django's own ClientCursor never
    # prepares): PostgreSQL planned a single create's one statement again on every call, about
    # 0.3 ms beside 0.8 ms of executing it. Django turns psycopg's preparing off for connection
    # poolers; 0 turns it off here (PgBouncer in transaction mode before 1.21).
    _prepare = env_int("DATABASE_PREPARE_THRESHOLD", 5, minimum=0)
    _db.setdefault("OPTIONS", {})["prepare_threshold"] = _prepare or None
DATABASES = {"default": _db}
DATABASE_HEALTH_CHECK_WINDOW = env_float("DATABASE_HEALTH_CHECK_WINDOW", 1.0, minimum=0)
if not DATABASE_URL or not env_str("REDIS_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded database, broker and cache live here
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and cache ---------------------------------------------
REDIS_URL = env_url("REDIS_URL", {"redis", "rediss", "unix"})
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "archangel.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "archangel"),
            # A Redis outage must slow a request by seconds at most, never hang it.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            # Shared by the web server and the worker processes through the file system.
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": VAR_DIR / "cache",
        }
    }

# --- Celery ------------------------------------------------------------------------
# PostgreSQL is the source of truth; Celery messages only wake the drain up
# (see docs/architecture in the README). Time limits stay below the outbox lease,
# which stays below the broker's visibility timeout.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 120, minimum=5)
# The soft limit lets a job clean up before the hard kill: 10 s, or a fifth of short limits.
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - min(10, max(1, CELERY_TASK_TIME_LIMIT // 5))
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 180, minimum=10)
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
if not CELERY_TASK_TIME_LIMIT < OUTBOX_LEASE_SECONDS < CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT < OUTBOX_LEASE_SECONDS < CELERY_VISIBILITY_TIMEOUT must hold "
        f"(got {CELERY_TASK_TIME_LIMIT}, {OUTBOX_LEASE_SECONDS}, {CELERY_VISIBILITY_TIMEOUT})"
    )

# --- Outbox delivery (outbox_app/drain.py; docs/reliability.md) ----------------------------
# Retries: exponential backoff with full jitter, delay = uniform(0, min(cap, base * 2**(n-1)))
# after the n-th failed attempt; after OUTBOX_MAX_ATTEMPTS failures the event is dead.
OUTBOX_BACKOFF_BASE_SECONDS = env_int("OUTBOX_BACKOFF_BASE_SECONDS", 2, minimum=1)
OUTBOX_BACKOFF_CAP_SECONDS = env_int("OUTBOX_BACKOFF_CAP_SECONDS", 600, minimum=1)
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 10, minimum=1)
# A create whose earlier attempt had an unknown outcome reads the provider's tasks changed since
# its first claim, at most this many pages (100 tasks each at ClickUp), before creating; past it,
# the event is dead for an operator rather than risk a second task (providers_app/adapters/common.py).
# Keep it below the provider's requests per rate window (ClickUp 100/min), or a lookup can never finish.
OUTBOX_REFERENCE_LOOKUP_MAX_PAGES = env_int("OUTBOX_REFERENCE_LOOKUP_MAX_PAGES", 50, minimum=1)
# Events claimed per claim transaction, and provider calls in flight at once per drain
# (threads, across different tasks: overlaps provider latency; 1 = sequential).
OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 50, minimum=1)
OUTBOX_DELIVERY_THREADS = env_int("OUTBOX_DELIVERY_THREADS", 8, minimum=1)
# How often beat runs the drain (the PeriodicTask is created by a migration and editable in
# the admin), and how long one drain job keeps claiming batches (below the time limit).
OUTBOX_DRAIN_INTERVAL_SECONDS = env_int("OUTBOX_DRAIN_INTERVAL_SECONDS", 5, minimum=1)
OUTBOX_DRAIN_MAX_SECONDS = env_int("OUTBOX_DRAIN_MAX_SECONDS", 30, minimum=1)
# Committing events sends one drain wake-up per window (deduplicated in the cache).
OUTBOX_WAKEUP = env_bool("OUTBOX_WAKEUP", True)
OUTBOX_WAKEUP_WINDOW_SECONDS = env_int("OUTBOX_WAKEUP_WINDOW_SECONDS", 1, minimum=1)
# Quota-saving delivery (outbox_app/batching.py): due events of one Todoist account go out as one
# Sync API request; an undelivered create or update absorbs the updates queued behind it.
OUTBOX_BATCHING = env_bool("OUTBOX_BATCHING", True)
OUTBOX_COALESCING = env_bool("OUTBOX_COALESCING", True)
if OUTBOX_DRAIN_MAX_SECONDS >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        "OUTBOX_DRAIN_MAX_SECONDS must stay below the soft time limit "
        f"(got {OUTBOX_DRAIN_MAX_SECONDS}, soft limit {CELERY_TASK_SOFT_TIME_LIMIT})"
    )

if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
else:
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost/"
    # Producer and consumer must share one folder for the file-system transport.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
# Without this a job whose worker child is SIGKILLed is acknowledged and lost.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Field encryption ----------------------------------------------------------------
# Comma-separated Fernet keys; the first encrypts, all decrypt (MultiFernet), so a
# new key is put first, `manage.py rotate_encryption_keys` re-encrypts, and the
# old key is removed afterwards.
ENCRYPTION_KEYS = env_list("ARCHANGEL_ENCRYPTION_KEYS")
if not ENCRYPTION_KEYS:
    if PRODUCTION:
        raise ImproperlyConfigured("ARCHANGEL_ENCRYPTION_KEYS must be set when DJANGO_ENV=production")
    # Development only: a stable key derived from the (development) secret key.
    ENCRYPTION_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]
for _key in ENCRYPTION_KEYS:
    try:
        if len(base64.urlsafe_b64decode(_key.encode())) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "ARCHANGEL_ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64-encoded bytes); "
            "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None

# --- Auth, i18n, static --------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Email ---------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
}[env_choice("EMAIL_BACKEND", "smtp" if EMAIL_HOST else "console", {"console", "file", "smtp"})]
EMAIL_FILE_PATH = VAR_DIR / "mail"
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Archangel <archangel@localhost>")

# --- REST API --------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "archangel.auth.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["archangel.permissions.RolePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["archangel.throttling.TokenRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "archangel.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "archangel.api.NullsLastOrderingFilter",
    ],
    "DEFAULT_PARSER_CLASSES": ["archangel.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["archangel.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "archangel.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Proxies in front of gunicorn whose X-Forwarded-For is trusted for anonymous throttling.
    "NUM_PROXIES": env_int("NUM_PROXIES", 1 if PRODUCTION else 0, minimum=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Archangel API",
    "DESCRIPTION": "Task orchestration across ClickUp, Trello and Todoist.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api",
    # The schema and its UI need a login or a token like every other endpoint.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_AUTHENTICATION": [
        "archangel.auth.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "ENUM_NAME_OVERRIDES": {
        "TaskStatusEnum": "tasks_app.status.TaskStatus",
        "BulkItemStatusEnum": ["created", "duplicate", "error"],
        "OutboxEventStatusEnum": "outbox_app.models.OutboxEvent.Status",
        "DeliveryAttemptOutcomeEnum": "outbox_app.models.DeliveryAttempt.Outcome",
        "HealthStatusEnum": ["ok", "down"],
    },
}

# --- Archangel -------------------------------------------------------------------------
_throttle_rate = env_str("ARCHANGEL_THROTTLE_RATE", "12000/min")
if _throttle_rate and not re.fullmatch(r"\d+/(s|sec|m|min|h|hour|d|day)", _throttle_rate):
    raise ImproperlyConfigured(f"ARCHANGEL_THROTTLE_RATE must look like 600/min, got {_throttle_rate!r}")
ARCHANGEL = {
    # Most tasks one POST /api/tasks/bulk may carry.
    "BULK_MAX_ITEMS": env_int("ARCHANGEL_BULK_MAX_ITEMS", 1000, minimum=1),
    # How long an Idempotency-Key is remembered.
    "IDEMPOTENCY_TTL_HOURS": env_int("ARCHANGEL_IDEMPOTENCY_TTL_HOURS", 24, minimum=1),
    # Requests per token (per client address when anonymous); "" turns throttling off.
    "THROTTLE_RATE": _throttle_rate,
    # Largest API request body; a bulk request of 1,000 ordinary tasks is about 200 KB.
    "MAX_BODY_BYTES": env_int("ARCHANGEL_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024),
    # Largest webhook body (/api/webhooks/...): provider payloads are a few KB; refused with
    # 413 before anything is parsed (docs/reliability.md, "Webhooks").
    "WEBHOOK_MAX_BODY_BYTES": env_int("ARCHANGEL_WEBHOOK_MAX_BODY_BYTES", 256 * 1024, minimum=1024),
    # Tasks created directly in a provider are adopted (normalized, scored); routed to a
    # person as well only when this is on.
    "WEBHOOK_ADOPT_ROUTE": env_bool("ARCHANGEL_WEBHOOK_ADOPT_ROUTE", default=False),
    # A delivery whose processing failed this many times stays failed (visible in the admin).
    "WEBHOOK_MAX_ATTEMPTS": env_int("ARCHANGEL_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1),
    # Milliseconds a process gathers committed deliveries before it queues one drain for them
    # (providers_app.services._DrainWaker); 0 queues it inline, in the request.
    "WEBHOOK_WAKEUP_DELAY_MS": env_int("ARCHANGEL_WEBHOOK_WAKEUP_DELAY_MS", 50, minimum=0),
    # The address providers reach this service at (https://archangel.example.com), for the
    # webhook callback URLs `manage.py register_webhooks` registers.
    "PUBLIC_URL": env_str("ARCHANGEL_PUBLIC_URL", ""),
    # Minutes between reconciliation pulls of each provider (0 turns the periodic pull off).
    "SYNC_PULL_MINUTES": env_int("ARCHANGEL_SYNC_PULL_MINUTES", 15, minimum=0),
    # A periodic pull stops after this many seconds and resumes from its cursor on the next run:
    # well inside the jobs' soft time limit, which would otherwise cut it mid-page.
    "SYNC_PULL_MAX_SECONDS": env_int("ARCHANGEL_SYNC_PULL_MAX_SECONDS", CELERY_TASK_SOFT_TIME_LIMIT // 2, minimum=1),
    # What happens to a provider's undelivered tasks when it goes down (tasks_app.services.provider_went_down):
    # "wait" for it to come back, or "move" them to another available provider.
    "PROVIDER_DOWN_POLICY": env_choice("ARCHANGEL_PROVIDER_DOWN_POLICY", "wait", {"wait", "move"}),
    # Routing reads the open load (tasks per provider, effort hours per person) with two aggregates
    # over every open task; each process keeps the result this many milliseconds, plus the tasks it
    # created itself since (tasks_app/selectors.py, "Open load"). 0 reads it for every decision.
    "ROUTING_LOAD_TTL_MS": env_int("ARCHANGEL_ROUTING_LOAD_TTL_MS", 1000, minimum=0),
    # Local hour (0-23, in each assignee's time zone) from which the morning plan email goes out.
    "PLAN_EMAIL_HOUR": env_int("ARCHANGEL_PLAN_EMAIL_HOUR", 7, minimum=0),
    # Sends of one plan email that failed before it is given up (each email job run retries once).
    "PLAN_EMAIL_MAX_ATTEMPTS": env_int("ARCHANGEL_PLAN_EMAIL_MAX_ATTEMPTS", 3, minimum=1),
}
if ARCHANGEL["SYNC_PULL_MAX_SECONDS"] >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        "ARCHANGEL_SYNC_PULL_MAX_SECONDS must be less than the jobs' soft time limit "
        f"({CELERY_TASK_SOFT_TIME_LIMIT} s), "
        f"got {ARCHANGEL['SYNC_PULL_MAX_SECONDS']}"
    )
if ARCHANGEL["ROUTING_LOAD_TTL_MS"] > 2000:
    # The documented bound on how stale routing's view of other processes' work may be.
    raise ImproperlyConfigured(
        f"ARCHANGEL_ROUTING_LOAD_TTL_MS must be at most 2000, got {ARCHANGEL['ROUTING_LOAD_TTL_MS']}"
    )
# How long finished records are kept (archangel/audit/retention.py; a beat job purges daily).
ARCHANGEL_RETENTION = {
    "OUTBOX_DAYS": env_int("ARCHANGEL_RETENTION_OUTBOX_DAYS", 30, minimum=1),
    "WEBHOOK_DAYS": env_int("ARCHANGEL_RETENTION_WEBHOOK_DAYS", 30, minimum=1),
    "AUDIT_DAYS": env_int("ARCHANGEL_RETENTION_AUDIT_DAYS", 400, minimum=1),
    "IDEMPOTENCY_HOURS": ARCHANGEL["IDEMPOTENCY_TTL_HOURS"],
}

# A provider base_url on a loopback/private/non-public address is refused (SSRF) unless this is
# set; `make run` sets it because the demo's provider sandbox listens on 127.0.0.1.
ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS = env_bool("ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS", default=False)
# Hosts a provider base_url may reach over plain http (comma-separated; everything else must be
# https). `make run` lists the sandbox's.
ARCHANGEL_PLAIN_HTTP_HOSTS = env_list("ARCHANGEL_PLAIN_HTTP_HOSTS", default=[])
# The oldest TLS version provider calls accept (all three providers offer 1.3); 1.2 only on purpose.
ARCHANGEL_PROVIDER_TLS_MIN = env_choice("ARCHANGEL_PROVIDER_TLS_MIN", "1.3", {"1.2", "1.3"})

if ARCHANGEL["PLAN_EMAIL_HOUR"] > 23:
    raise ImproperlyConfigured(
        f"ARCHANGEL_PLAN_EMAIL_HOUR must be an hour from 0 to 23, got {ARCHANGEL['PLAN_EMAIL_HOUR']}"
    )

# The score's weights (tasks_app/scoring.py): one variable per factor, each non-negative,
# together summing to 1. Checked here so a bad value stops start-up, not the first request.
_SCORE_WEIGHT_VARS = {name: f"ARCHANGEL_SCORE_WEIGHT_{name.upper()}" for name in _scoring.FACTORS}
SCORE_WEIGHTS = {
    name: env_float(var, _scoring.DEFAULT_WEIGHTS[name], minimum=0) for name, var in _SCORE_WEIGHT_VARS.items()
}
if abs(sum(SCORE_WEIGHTS.values()) - 1) > 1e-6:
    raise ImproperlyConfigured(
        f"{' + '.join(_SCORE_WEIGHT_VARS.values())} must sum to 1, got {sum(SCORE_WEIGHTS.values()):g} "
        f"({', '.join(f'{var}={SCORE_WEIGHTS[name]:g}' for name, var in _SCORE_WEIGHT_VARS.items())})"
    )
SCORE_WEIGHTS = _scoring.validate_weights(SCORE_WEIGHTS)

# --- Provider calls: timeouts, circuit breakers, rate budgets (providers_app) -----------------
PROVIDERS = {
    # Seconds to open a connection and to wait for an answer; a read timeout after the request
    # was sent leaves its outcome unknown (docs/reliability.md), so the next attempt looks first.
    "CONNECT_TIMEOUT": env_int("PROVIDER_CONNECT_TIMEOUT", 5, minimum=1),
    "READ_TIMEOUT": env_int("PROVIDER_READ_TIMEOUT", 30, minimum=1),
    # Consecutive retryable failures that open a provider's breaker, and seconds before it lets a probe through.
    "BREAKER_FAIL_MAX": env_int("PROVIDER_BREAKER_FAIL_MAX", 5, minimum=1),
    "BREAKER_RESET_SECONDS": env_int("PROVIDER_BREAKER_RESET_SECONDS", 30, minimum=1),
    # After a Redis error a process keeps a private in-memory breaker this long before it tries
    # the shared one in Redis again (providers_app/breakers.py).
    "BREAKER_REDIS_RETRY_SECONDS": env_int("PROVIDER_BREAKER_REDIS_RETRY_SECONDS", 30, minimum=1),
    # Share of each documented rate limit kept unused (clock skew, requests in flight), in percent.
    "RATE_LIMIT_MARGIN_PERCENT": env_int("PROVIDER_RATE_LIMIT_MARGIN_PERCENT", 10, minimum=0),
    # Share of each window only urgent work may take, in percent.
    "URGENT_RESERVE_PERCENT": env_int("PROVIDER_URGENT_RESERVE_PERCENT", 20, minimum=0),
}
# Seconds provider metadata (list statuses, board lists and labels, projects, user ids) stays cached
# (providers_app/metadata.py); the Provider admin's "Refresh provider metadata" drops it at once.
PROVIDER_METADATA_TTL_SECONDS = env_int("PROVIDER_METADATA_TTL_SECONDS", 3600, minimum=1)
if PROVIDERS["RATE_LIMIT_MARGIN_PERCENT"] >= 100 or PROVIDERS["URGENT_RESERVE_PERCENT"] >= 100:
    raise ImproperlyConfigured(
        "PROVIDER_RATE_LIMIT_MARGIN_PERCENT and PROVIDER_URGENT_RESERVE_PERCENT must be below 100"
    )

# --- Production hardening ----------------------------------------------------------------
if PRODUCTION:
    # TLS ends at the proxy, which sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # Preloading is hard to undo; it is on because `check --deploy` asks for it.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Health checks and Prometheus scrapes come from inside the network over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^api/health$", r"^metrics$"]

# --- Observability: metrics, tracing, logs (docs/operations.md) ------------------------------
# Who may read /metrics (archangel/metrics_view.py): clients in these networks (comma-separated
# CIDRs; "*" = anyone) that did not come through a proxy, or anyone with METRICS_TOKEN as a bearer
# token. Production defaults to the private networks Prometheus scrapes from; development is open.
_PRIVATE_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"]
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", _PRIVATE_NETWORKS if PRODUCTION else ["*"])
if "*" in METRICS_ALLOWED_NETWORKS:
    METRICS_ALLOWED_NETWORKS = None
else:
    for _network in METRICS_ALLOWED_NETWORKS:
        try:
            ipaddress.ip_network(_network)
        except ValueError:
            raise ImproperlyConfigured(
                f"METRICS_ALLOWED_NETWORKS must be comma-separated networks such as 10.0.0.0/8 (or *), got {_network!r}"
            ) from None
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 32 characters (or empty)")
# Each Celery worker serves its metrics on this port (0 turns it off); see archangel/celery_signals.py.
CELERY_METRICS_PORT = env_int("CELERY_METRICS_PORT", 9808, minimum=0)
# The worker exporter has no access control: in containers it listens on the private network
# Prometheus scrapes from; elsewhere only on the loopback interface.
CELERY_METRICS_ADDRESS = env_str("CELERY_METRICS_ADDRESS", "0.0.0.0" if PRODUCTION else "127.0.0.1")  # noqa: S104
# prometheus_client's multiprocess mode (gunicorn workers, Celery pool children) writes to this
# folder; it must exist before the first metric is created, which happens during Django's setup.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

LOG_LEVEL = env_choice("LOG_LEVEL", "info", {"debug", "info", "warning", "error"}).upper()
# JSON lines in production (LOG_FORMAT=json|text overrides), secrets masked in both (archangel/logging.py).
LOG_FORMAT = log_format(PRODUCTION)
LOGGING = logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
