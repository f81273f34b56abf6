"""OmniRouter settings: one module, driven by environment variables, with embedded defaults.

With no environment at all the product runs embedded: SQLite, the in-memory channel layer and the
routing loop inside the web process. Set DATABASE_URL and REDIS_URL for production (PostgreSQL,
channels-redis, Celery workers and beat).
"""

import os
from pathlib import Path

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the embedded run keeps its SQLite file, generated secret key and demo logins.
VAR_DIR = Path(env("OMNIROUTER_VAR_DIR", default=str(BASE_DIR / "var")))

# --- Core -----------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY and env.bool("DJANGO_REQUIRE_SECRET_KEY", default=False):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (production refuses a made-up key).")
if not SECRET_KEY:
    # Embedded runs get a per-checkout key written once to var/; production must set one.
    _key_file = VAR_DIR / "secret_key"
    if _key_file.exists():
        if _key_file.stat().st_mode & 0o077:
            _key_file.chmod(0o600)  # written by an older version, readable by others
        SECRET_KEY = _key_file.read_text().strip()
    else:
        from django.core.management.utils import get_random_secret_key

        _key_file.parent.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = get_random_secret_key()
        # Created owner-only (0600) in one step: never readable by others, not even briefly.
        _fd = os.open(_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(_fd, "w") as _out:
            _out.write(SECRET_KEY)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS, cookies, security headers --------------------------------------------------------
# Off by default so the embedded run works on http://localhost; production over HTTPS turns them
# on (`manage.py check --deploy` then reports nothing).
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# Load balancers probe the health check over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=False)
# Behind a proxy that terminates TLS: "HTTP_X_FORWARDED_PROTO,https". Only set it when the proxy
# always sets (or strips) that header, or clients could claim HTTPS themselves.
_proxy_ssl_header = env.list("DJANGO_SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "DJANGO_SECURE_PROXY_SSL_HEADER is a header and a value, e.g. HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) if _proxy_ssl_header else None
# Proxies in front of the server that append to X-Forwarded-For: the client's address is the
# entry this many places from the right. 0: REMOTE_ADDR (no proxy, or one that rewrites it).
TRUSTED_PROXY_COUNT = env.int("DJANGO_TRUSTED_PROXY_COUNT", default=0)
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp 4): pages load scripts, styles, images and sockets from
# this server only; no inline scripts or styles. The web-chat widget on customers' sites is
# governed by their own policy (it needs script-src, style-src and connect-src for this server).
_CSP_DIRECTIVES = {
    "default-src": [SELF],
    "script-src": [SELF],
    "style-src": [SELF],
    "img-src": [SELF, "data:"],
    "font-src": [SELF],
    # 'self' covers ws:// and wss:// to this host (CSP level 3).
    "connect-src": [SELF],
    "object-src": [NONE],
    "base-uri": [SELF],
    "form-action": [SELF],
    "frame-ancestors": [NONE],
}
if env("DJANGO_CSP_REPORT_URI", default=""):
    _CSP_DIRECTIVES["report-uri"] = [env("DJANGO_CSP_REPORT_URI")]
if env.bool("DJANGO_CSP_REPORT_ONLY", default=False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": _CSP_DIRECTIVES}
else:
    CONTENT_SECURITY_POLICY = {"DIRECTIVES": _CSP_DIRECTIVES}
PERMISSIONS_POLICY = env(
    "DJANGO_PERMISSIONS_POLICY",
    default=(
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "health_check",
    "channels",
    "csp",
    "axes",
    "simple_history",
    "routing",
    "presence",
    "supervisor",
    "messaging",
    "assist",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "omnirouter.middleware.PermissionsPolicyMiddleware",
    # Versions of rules and routing configurations record who saved them (admin and API).
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into a response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "omnirouter.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "omnirouter.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "presence.context_processors.workspaces",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
_SQLITE_URL = f"sqlite:///{VAR_DIR / 'omnirouter.sqlite3'}"
DATABASES = {"default": env.db("DATABASE_URL", default=_SQLITE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE transactions and a busy timeout let the embedded routing thread and web requests
    # share one SQLite file without "database is locked" errors.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # 0 under ASGI: each request runs in its own thread, and kept connections pile up per thread.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and Celery broker use separate databases ---------------------------
REDIS_URL = env("REDIS_URL", default="")


def _redis_db(url: str, offset: int) -> str:
    """The URL of the database ``offset`` after the one REDIS_URL names (default 0)."""
    base = url.rstrip("/")
    head, _, tail = base.rpartition("/")
    if tail.isdigit() and "//" in head:
        return f"{head}/{int(tail) + offset}"
    return f"{base}/{offset}"


def _with_read_timeout(url: str, seconds: int) -> str:
    """``url`` with a socket read timeout, unless it names one already.

    channels-redis waits for a consumer's next message with a blocking BZPOPMIN of 5 s, and
    redis-py 8 times reads out after 5 s by default: every idle WebSocket consumer then died with
    redis TimeoutError after a few quiet seconds (its console reconnected, events in between were
    lost). A read timeout well above the blocking wait keeps idle consumers alive.
    """
    if "socket_timeout=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}socket_timeout={seconds}"


# channels-redis (and the in-memory layer) forget a group member this long after it last joined:
# a consumer that never re-joined would silently stop hearing its group. Consumers re-join every
# REALTIME_GROUP_REJOIN_SECONDS, which also restores memberships lost when Redis was flushed or
# restarted; keep it well under the expiry. Pages re-read their state every REALTIME_RESYNC_SECONDS
# (and on every reconnect), so an event lost anyway is repaired within that time.
CHANNEL_LAYER_GROUP_EXPIRY_SECONDS = env.int("CHANNEL_LAYER_GROUP_EXPIRY_SECONDS", default=86400)
REALTIME_GROUP_REJOIN_SECONDS = env.float(
    "REALTIME_GROUP_REJOIN_SECONDS", default=min(60.0, CHANNEL_LAYER_GROUP_EXPIRY_SECONDS / 10)
)
if not 0 < REALTIME_GROUP_REJOIN_SECONDS <= CHANNEL_LAYER_GROUP_EXPIRY_SECONDS / 2:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "REALTIME_GROUP_REJOIN_SECONDS must be positive and at most half of "
        "CHANNEL_LAYER_GROUP_EXPIRY_SECONDS, or consoles drop out of their groups."
    )
REALTIME_RESYNC_SECONDS = env.int("REALTIME_RESYNC_SECONDS", default=60)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    _with_read_timeout(
                        env("CHANNEL_LAYER_REDIS_URL", default=_redis_db(REDIS_URL, 1)), 30
                    )
                ],
                "capacity": 1000,
                "expiry": 30,
                "group_expiry": CHANNEL_LAYER_GROUP_EXPIRY_SECONDS,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"group_expiry": CHANNEL_LAYER_GROUP_EXPIRY_SECONDS},
        }
    }

# Rate limits and throttles count in the cache: shared by every web process through Redis in
# production, process memory in the embedded run (one process).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env("CACHE_REDIS_URL", default=_redis_db(REDIS_URL, 2)),
            "KEY_PREFIX": "omnirouter",
            # Rate limits read it on every request: an unreachable Redis must answer fast (the
            # limits then let requests through: omnirouter/ratelimit.py).
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Routing --------------------------------------------------------------------------------
# "celery": events enqueue Celery tasks, beat runs CELERY_BEAT_SCHEDULE. "embedded": one loop in
# the web process does both, from the same schedule (omnirouter/embedded.py, the README's run
# command). Default follows REDIS_URL.
ROUTING_MODE = env("ROUTING_MODE", default="celery" if REDIS_URL else "embedded")
ROUTING_BATCH_SIZE = env.int("ROUTING_BATCH_SIZE", default=1000)
ROUTING_MAX_PAGES_PER_PASS = env.int("ROUTING_MAX_PAGES_PER_PASS", default=20)
ROUTING_SWEEP_INTERVAL_SECONDS = env.float("ROUTING_SWEEP_INTERVAL_SECONDS", default=1.0)
ROUTING_REOFFER_COOLDOWN_SECONDS = env.int("ROUTING_REOFFER_COOLDOWN_SECONDS", default=60)
# How long an item given a preferred agent at intake waits for them (when the request does not
# say) before any member may have it.
ROUTING_PREFERRED_AGENT_SECONDS = env.int("ROUTING_PREFERRED_AGENT_SECONDS", default=60)
CONSOLE_GRACE_SECONDS = env.int("CONSOLE_GRACE_SECONDS", default=30)
CONSOLE_HEARTBEAT_SECONDS = env.int("CONSOLE_HEARTBEAT_SECONDS", default=10)
# A heartbeat within this many seconds of the stored one writes nothing (one agent row write per
# interval, whatever the number of tabs). Keep it plus the heartbeat below the grace: a live
# console's stored time is at most this plus one heartbeat old. Lost consoles go offline after
# the grace plus this (the stored time may lag the last heartbeat by as much).
CONSOLE_SEEN_WRITE_INTERVAL_SECONDS = env.int("CONSOLE_SEEN_WRITE_INTERVAL_SECONDS", default=15)
# The sweep checks the load of agents whose work changed since its last check, and every
# agent's this often.
ROUTING_CAPACITY_FULL_CHECK_SECONDS = env.int("ROUTING_CAPACITY_FULL_CHECK_SECONDS", default=60)

# --- Input ----------------------------------------------------------------------------------
# JSON bodies and WebSocket frames nested deeper than this are refused (omnirouter/inputs.py).
INPUT_MAX_JSON_DEPTH = env.int("INPUT_MAX_JSON_DEPTH", default=32)

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env(
    "CELERY_BROKER_URL", default=_redis_db(REDIS_URL, 0) if REDIS_URL else "memory://"
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"routing.*": {"queue": "routing"}}
# Workers and beat wait for a broker that is down at startup, and reconnect without giving up
# (Celery's default stops after 100 tries) when it goes away later: routing resumes by itself
# within a sweep interval of Redis coming back.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
MESSAGING_MAINTENANCE_INTERVAL_SECONDS = env.float(
    "MESSAGING_MAINTENANCE_INTERVAL_SECONDS", default=10.0
)
# What runs periodically and how often, in both runs: Celery beat reads it, and so does the
# embedded loop (fixed intervals only). Apps add their entries below, next to their settings.
CELERY_BEAT_SCHEDULE = {
    "routing-sweep": {
        "task": "routing.sweep",
        "schedule": ROUTING_SWEEP_INTERVAL_SECONDS,
        # A sweep older than its interval is useless: the next one does the same work.
        "options": {"expires": max(ROUTING_SWEEP_INTERVAL_SECONDS * 5, 5)},
    },
    "messaging-maintenance": {
        "task": "messaging.maintenance",
        "schedule": MESSAGING_MAINTENANCE_INTERVAL_SECONDS,
        "options": {"expires": 30},
    },
}

# Exception rules (routing.services.exceptions): how often they are checked. A rule's N seconds
# are met within this much of their passing.
ROUTING_EXCEPTION_RULES_INTERVAL_SECONDS = env.float(
    "ROUTING_EXCEPTION_RULES_INTERVAL_SECONDS", default=5.0
)
CELERY_BEAT_SCHEDULE["routing-exception-rules"] = {
    "task": "routing.exception_rules",
    "schedule": ROUTING_EXCEPTION_RULES_INTERVAL_SECONDS,
    "options": {"expires": max(ROUTING_EXCEPTION_RULES_INTERVAL_SECONDS * 2, 5)},
}

# Intake: how long an Idempotency-Key is remembered (a retry after that creates a new item).
ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS = env.int(
    "ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS", default=24
)
CELERY_BEAT_SCHEDULE["routing-purge-idempotency-keys"] = {
    "task": "routing.purge_idempotency_keys",
    "schedule": 3600.0,
    "options": {"expires": 3600},
}

# --- Health and metrics ---------------------------------------------------------------------
# /readyz: how long each check (database, each Redis database, Celery worker ping) may take.
READINESS_TIMEOUT_SECONDS = env.float("READINESS_TIMEOUT_SECONDS", default=1.0)
# /metrics answers admins (session) and requests with "Authorization: Bearer <this>" (scrapers).
# Empty: admins only.
METRICS_BEARER_TOKEN = env("METRICS_BEARER_TOKEN", default="")

# --- Messaging ------------------------------------------------------------------------------
# Conversations idle longer than this end on their own (the customer has left).
MESSAGING_INACTIVITY_MINUTES = env.int("MESSAGING_INACTIVITY_MINUTES", default=30)
# A customer who writes again after their conversation ended is offered to the previous agent
# first, for this long, if the previous conversation ended within the look-back window.
MESSAGING_STICKY_SECONDS = env.int("MESSAGING_STICKY_SECONDS", default=60)
MESSAGING_STICKY_LOOKBACK_HOURS = env.int("MESSAGING_STICKY_LOOKBACK_HOURS", default=24)
# Outbound sends: attempts in all, and the first retry delay (doubled on each retry).
MESSAGING_SEND_MAX_ATTEMPTS = env.int("MESSAGING_SEND_MAX_ATTEMPTS", default=5)
MESSAGING_SEND_BACKOFF_SECONDS = env.float("MESSAGING_SEND_BACKOFF_SECONDS", default=2.0)
MESSAGING_PROVIDER_TIMEOUT_SECONDS = env.float("MESSAGING_PROVIDER_TIMEOUT_SECONDS", default=10.0)
# The public base URL providers call us on (https://support.example.com): used to check
# X-Twilio-Signature behind a proxy and to give Twilio a status callback URL. Empty: the URL of
# the request as Django sees it.
MESSAGING_PUBLIC_BASE_URL = env("MESSAGING_PUBLIC_BASE_URL", default="")
# Where new cases are routed (queue name, service channel key).
MESSAGING_CASE_QUEUE = env("MESSAGING_CASE_QUEUE", default="Support cases")
MESSAGING_CASE_CHANNEL = env("MESSAGING_CASE_CHANNEL", default="case")
# A self-service case under an e-mail address is unverified until the sender follows the
# confirmation link mailed to that address; the link works for this long.
MESSAGING_CASE_CONFIRM_MAX_AGE_SECONDS = env.int(
    "MESSAGING_CASE_CONFIRM_MAX_AGE_SECONDS", default=3 * 24 * 3600
)
# Phone numbers written without a country code ("(415) 555-0100") are read as numbers of this
# region (ISO 3166 code) when customers are matched across channels.
PHONE_DEFAULT_REGION = env("PHONE_DEFAULT_REGION", default="US")
# A customer proving an address another customer has: the one-time code's life and tries.
MESSAGING_IDENTITY_CODE_TTL_SECONDS = env.int("MESSAGING_IDENTITY_CODE_TTL_SECONDS", default=600)
MESSAGING_IDENTITY_CODE_MAX_ATTEMPTS = env.int("MESSAGING_IDENTITY_CODE_MAX_ATTEMPTS", default=3)
# A customer writing on a second channel while an agent holds their live conversation is
# offered to that agent first, for this long.
MESSAGING_GROUP_PREFER_SECONDS = env.int("MESSAGING_GROUP_PREFER_SECONDS", default=120)

# --- E-mail ---------------------------------------------------------------------------------
# EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587; the embedded run prints
# e-mails on the console.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="support@localhost")

# --- Supervisor dashboard -------------------------------------------------------------------
# A dashboard gets at most one snapshot per this many seconds however many routing events
# arrive (the last change always shows), and one every SUPERVISOR_REFRESH_SECONDS regardless,
# so wait times keep growing on screen.
SUPERVISOR_SNAPSHOT_THROTTLE_SECONDS = env.float(
    "SUPERVISOR_SNAPSHOT_THROTTLE_SECONDS", default=0.5
)
SUPERVISOR_REFRESH_SECONDS = env.float("SUPERVISOR_REFRESH_SECONDS", default=5.0)
SUPERVISOR_WORK_LIST_LIMIT = env.int("SUPERVISOR_WORK_LIST_LIMIT", default=500)
# Trend samples: one per queue every interval, kept for the retention period.
SUPERVISOR_SAMPLE_INTERVAL_SECONDS = env.int("SUPERVISOR_SAMPLE_INTERVAL_SECONDS", default=60)
SUPERVISOR_SAMPLE_RETENTION_DAYS = env.int("SUPERVISOR_SAMPLE_RETENTION_DAYS", default=7)
SUPERVISOR_HISTORY_DEFAULT_HOURS = env.int("SUPERVISOR_HISTORY_DEFAULT_HOURS", default=4)
SUPERVISOR_HISTORY_MAX_HOURS = env.int("SUPERVISOR_HISTORY_MAX_HOURS", default=48)
CELERY_BEAT_SCHEDULE["supervisor-sample-queues"] = {
    "task": "supervisor.sample_queues",
    "schedule": float(SUPERVISOR_SAMPLE_INTERVAL_SECONDS),
    # A late sample is still worth taking, but not after the next one is due.
    "options": {"expires": SUPERVISOR_SAMPLE_INTERVAL_SECONDS},
}

# --- Assistance -----------------------------------------------------------------------------
# Training learns from the closed items created in the last this many days (0: all), at most
# the newest ASSIST_TRAINING_MAX_ITEMS, and retrains this often (first at start-up in the
# embedded run). Keyword rules (the baseline the model must beat, and the fallback) are the
# words of each queue's name plus these, per queue name: {"Billing": ["refund", "invoice"]}.
ASSIST_TRAINING_WINDOW_DAYS = env.int("ASSIST_TRAINING_WINDOW_DAYS", default=365)
ASSIST_TRAINING_MAX_ITEMS = env.int("ASSIST_TRAINING_MAX_ITEMS", default=20000)
ASSIST_RETRAIN_INTERVAL_HOURS = env.float("ASSIST_RETRAIN_INTERVAL_HOURS", default=24.0)
ASSIST_RULE_KEYWORDS = env.json("ASSIST_RULE_KEYWORDS", default={})
# Products the prefill recognises in customers' first messages.
ASSIST_PRODUCT_CATALOGUE = env.list(
    "ASSIST_PRODUCT_CATALOGUE",
    default=[
        "Aurora Router X2",
        "Pulse Earbuds",
        "Volt Charger 65W",
        "Orbit Smart Plug",
        "Nimbus Cam",
    ],
)
CELERY_BEAT_SCHEDULE["assist-retrain"] = {
    "task": "assist.retrain",
    "schedule": ASSIST_RETRAIN_INTERVAL_HOURS * 3600,
    "options": {"expires": ASSIST_RETRAIN_INTERVAL_HOURS * 3600},
}

# --- Auth, API ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login lockout (django-axes): after LOGIN_MAX_FAILURES wrong passwords for one username from one
# address, that pair is refused (429) for LOGIN_LOCKOUT_MINUTES, even with the right password.
# Covers the site login, the admin login and the API's browsable login (all go through
# django.contrib.auth.authenticate).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_MAX_FAILURES", default=5)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
AXES_COOLOFF_TIME = LOGIN_LOCKOUT_MINUTES / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "omnirouter.ratelimit.client_ip"
AXES_LOCKOUT_CALLABLE = "omnirouter.ratelimit.login_locked_out"

# API throttles (requests per minute, per user; anonymous per address), by role.
API_THROTTLE_ANONYMOUS_PER_MINUTE = env.int("API_THROTTLE_ANONYMOUS_PER_MINUTE", default=60)
API_THROTTLE_AGENT_PER_MINUTE = env.int("API_THROTTLE_AGENT_PER_MINUTE", default=600)
API_THROTTLE_SUPERVISOR_PER_MINUTE = env.int("API_THROTTLE_SUPERVISOR_PER_MINUTE", default=600)
API_THROTTLE_ADMIN_PER_MINUTE = env.int("API_THROTTLE_ADMIN_PER_MINUTE", default=1200)
API_THROTTLE_INTAKE_PER_MINUTE = env.int("API_THROTTLE_INTAKE_PER_MINUTE", default=3000)
# POST /api/work-items/ on its own (per intake client), within the role's budget.
API_THROTTLE_WORK_ITEM_CREATE_PER_MINUTE = env.int(
    "API_THROTTLE_WORK_ITEM_CREATE_PER_MINUTE", default=120
)
# Provider webhooks, per channel account and sending address.
WEBHOOK_REQUESTS_PER_MINUTE = env.int("WEBHOOK_REQUESTS_PER_MINUTE", default=1200)
# Self-service help: cases one address may open per hour.
HELP_CASES_PER_HOUR = env.int("HELP_CASES_PER_HOUR", default=10)
# Web-chat socket frames (per connection): a burst, then a steady rate.
WEBCHAT_BURST_FRAMES = env.int("WEBCHAT_BURST_FRAMES", default=20)
WEBCHAT_FRAMES_PER_SECOND = env.float("WEBCHAT_FRAMES_PER_SECOND", default=2.0)

REST_FRAMEWORK = {
    # Token first: an anonymous request then gets 401 with a WWW-Authenticate challenge
    # (with session first DRF answers 403, which clients cannot tell from a role refusal).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # NUL bytes and deep nesting are refused with 400 naming the field (omnirouter/inputs.py).
    "DEFAULT_PARSER_CLASSES": [
        "omnirouter.inputs.SafeJSONParser",
        "omnirouter.inputs.SafeFormParser",
        "omnirouter.inputs.SafeMultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "omnirouter.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["omnirouter.ratelimit.RoleRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OmniRouter API",
    "DESCRIPTION": "Configure routing, take in work, act on offers, watch the center.",
    "VERSION": "0.1.0",
    # Request and response bodies as separate components: read-only fields (ids, state) do not
    # show up as inputs.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc served from our static files (drf-spectacular-sidecar), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "omnirouter.schema.add_error_responses",
    ],
}

# --- I18n, time, static ---------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, process, thread,
# exception), for log collectors; "plain" (the default) for people.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "omnirouter.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
