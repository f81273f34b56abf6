"""OmniRouter settings: one module, driven by environment variables, with embedded defaults.

With no environment at all the product runs embedded: SQLite, the in-memory channel layer and the
routing loop inside the web process. Set DATABASE_URL and REDIS_URL for production (PostgreSQL,
channels-redis, Celery workers and beat).
"""

from pathlib import Path

import environ

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
        SECRET_KEY = _key_file.read_text().strip()
    else:
        from django.core.management.utils import get_random_secret_key

        _key_file.parent.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = get_random_secret_key()
        _key_file.write_text(SECRET_KEY)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

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
    "channels",
    "routing",
    "presence",
    "supervisor",
    "messaging",
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
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Routing --------------------------------------------------------------------------------
# "celery": events enqueue Celery tasks, beat runs the sweep. "embedded": one thread in the web
# process does both (the README's run command). Default follows REDIS_URL.
ROUTING_MODE = env("ROUTING_MODE", default="celery" if REDIS_URL else "embedded")
ROUTING_BATCH_SIZE = env.int("ROUTING_BATCH_SIZE", default=1000)
ROUTING_MAX_PAGES_PER_PASS = env.int("ROUTING_MAX_PAGES_PER_PASS", default=20)
ROUTING_SWEEP_INTERVAL_SECONDS = env.float("ROUTING_SWEEP_INTERVAL_SECONDS", default=1.0)
ROUTING_REOFFER_COOLDOWN_SECONDS = env.int("ROUTING_REOFFER_COOLDOWN_SECONDS", default=60)
CONSOLE_GRACE_SECONDS = env.int("CONSOLE_GRACE_SECONDS", default=30)
CONSOLE_HEARTBEAT_SECONDS = env.int("CONSOLE_HEARTBEAT_SECONDS", default=10)

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
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
MESSAGING_MAINTENANCE_INTERVAL_SECONDS = env.float(
    "MESSAGING_MAINTENANCE_INTERVAL_SECONDS", default=10.0
)
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

# --- Auth, API ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    # Token first: an anonymous request then gets 401 with a WWW-Authenticate challenge
    # (with session first DRF answers 403, which clients cannot tell from a role refusal).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "omnirouter.api_errors.exception_handler",
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
