"""Settings of the example project: every stream of django-rtcstream's table.

Runs out of the box with nothing but Python: SQLite in the repository
(``example.sqlite3``), the in-memory channel layer and the local-memory cache.

Environment overrides (all optional):

- ``RTCSTREAM_EXAMPLE_DB``: path of the SQLite file (default ``example.sqlite3``).
- ``RTCSTREAM_ICE_HOSTS``: comma-separated addresses the server gathers ICE
  host candidates on, e.g. ``127.0.0.1`` for a loopback-only machine.
- ``RTCSTREAM_EXAMPLE_REDIS=1`` with ``REDIS_URL``: channels-redis layer and a
  Redis cache, so several worker processes can serve the same sessions.
- ``RTCSTREAM_EXAMPLE_POSTGRES=1`` with ``DATABASE_URL``
  (``postgresql://user:password@host:port/name``): PostgreSQL instead of SQLite.
- ``DJANGO_ALLOWED_HOSTS``: comma-separated hosts added to ``ALLOWED_HOSTS``.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-a-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"] + [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()
]
USE_TZ = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_rtcstream",
    "example_project",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example_project.urls"
ASGI_APPLICATION = "example_project.asgi.application"
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
            ]
        },
    }
]
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- database: SQLite by default, PostgreSQL on request ---------------------------------

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("RTCSTREAM_EXAMPLE_DB") or str(BASE_DIR / "example.sqlite3"),
        # WAL: session writes from the media loop do not block readers (the admin), and a
        # commit appends to the log instead of rewriting a journal (admission: 3.0 -> 2.0 ms).
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }
}
if os.environ.get("RTCSTREAM_EXAMPLE_POSTGRES") == "1" and os.environ.get("DATABASE_URL"):
    _db = urlparse(os.environ["DATABASE_URL"])
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": unquote(_db.username or ""),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname or "",
        "PORT": str(_db.port or ""),
    }

# -- channel layer and cache: in-process by default, Redis on request --------------------

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("RTCSTREAM_EXAMPLE_REDIS") == "1" and os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No socket timeout: channels-redis blocks 5 s per read (check django_rtcstream.W002).
            "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}]},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
        }
    }

# -- django-rtcstream -------------------------------------------------------------------

_ice_hosts = [h.strip() for h in os.environ.get("RTCSTREAM_ICE_HOSTS", "").split(",") if h.strip()]

RTCSTREAM = {
    "STREAMS": {
        # video
        "flip": "example_project.streams.flip",
        "video-counter": "example_project.streams.video_counter",
        "pattern": "example_project.streams.pattern",
        # audio
        "echo": "example_project.streams.echo",
        "level": "example_project.streams.level",
        "tone": "example_project.streams.tone",
        # audio + video
        "av-echo": "example_project.streams.av_echo",
        "av-counter": "example_project.streams.av_counter",
        "av-tone": "example_project.streams.av_tone",
        # additional inputs
        "brightness": "example_project.streams.brightness",
        # voice agents (offline STT/TTS; example_project/voice.py)
        "say-back": "example_project.voice.say_back_stream",
        "assistant": "example_project.voice.assistant",
    },
    # No ICE servers anywhere (no public STUN): host candidates only.
    "ICE_HOST_ADDRESSES": _ice_hosts or None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_rtcstream": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
