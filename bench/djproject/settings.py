"""Settings of the benchmark's Django project: production-like, quiet, loopback only.

Environment: ``BENCH_DB`` (SQLite path) or ``BENCH_DATABASE_URL`` (PostgreSQL),
``BENCH_REDIS_URL`` (channels-redis layer and Redis cache, for several workers).
"""

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = "bench-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "rest_framework",
    "django_rtcstream",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "bench.djproject.urls"
ASGI_APPLICATION = "bench.djproject.asgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", "/tmp/rtcstream-bench.sqlite3"),
        # BENCH_SQLITE_MODE=DEFERRED (--sqlite-deferred) checks that concurrent offers are
        # admitted without IMMEDIATE transactions (fixed in 048498c); WAL as in the example.
        "OPTIONS": {
            "transaction_mode": os.environ.get("BENCH_SQLITE_MODE", "IMMEDIATE"),
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
if os.environ.get("BENCH_DATABASE_URL"):
    _db = urlsplit(os.environ["BENCH_DATABASE_URL"])
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": unquote(_db.username or ""),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname or "",
        "PORT": str(_db.port or ""),
    }

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("BENCH_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["BENCH_REDIS_URL"]], "prefix": "rtcstream-bench"},
        }
    }
    if os.environ.get("BENCH_REDIS_DEFAULTS") != "1":
        # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s channels-redis
        # blocks for in BZPOPMIN; sessions used to die after ~5 s (fixed in 896781f, which
        # retries and warns with check W002). Hosts without a socket timeout, as W002 advises;
        # BENCH_REDIS_DEFAULTS=1 (run.py --redis-defaults) uses the plain URL.
        CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
            {"address": os.environ["BENCH_REDIS_URL"], "socket_timeout": None}
        ]
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["BENCH_REDIS_URL"],
            "KEY_PREFIX": "rtcstream-bench",
        }
    }

RTCSTREAM = {
    "STREAMS": {
        "flip": "bench.djproject.streams.flip",
        "slowflip": "bench.djproject.streams.slowflip",
        "echo": "bench.djproject.streams.echo",
        "echo-async": "bench.djproject.streams.echo_async",
        "echo-fixed": "bench.djproject.streams.echo_fixed",
        "echo-p4": "bench.djproject.streams.echo_p4",
    },
    "ICE_HOST_ADDRESSES": ["127.0.0.1"],
    "OPEN_SESSIONS": False,
}
# Stats sampling (sessions/stats.py): BENCH_STATS_INTERVAL=0 measures with it off.
if os.environ.get("BENCH_STATS_INTERVAL"):
    RTCSTREAM["STATS_INTERVAL"] = float(os.environ["BENCH_STATS_INTERVAL"])
if os.environ.get("BENCH_WORKER_NAME"):
    RTCSTREAM["WORKER_NAME"] = os.environ["BENCH_WORKER_NAME"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
