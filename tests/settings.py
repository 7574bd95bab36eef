"""Settings of the test project: a minimal site with django-rtcstream.

The channel layer and cache are in-memory and the database is SQLite (tests
only); tests about several workers override them with Redis and PostgreSQL
from REDIS_URL / DATABASE_URL.
"""

import os
import tempfile

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
INSTALLED_APPS = [
    "daphne",  # first, as the README says: it imports Twisted, which the suite must live with
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_rtcstream",
    "tests",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
ASGI_APPLICATION = "tests.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
# On disk, so that the in-process server's threads and the tests share it.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # RTCSTREAM_TEST_SQLITE: a server subprocess's own database (tests/test_shutdown.py).
        "NAME": os.environ.get("RTCSTREAM_TEST_SQLITE")
        or os.path.join(tempfile.gettempdir(), "rtcstream-tests.sqlite3"),
        "TEST": {
            "NAME": os.path.join(tempfile.gettempdir(), f"rtcstream-test-{os.getpid()}.sqlite3")
        },
    }
}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}  # tests only
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # tests only
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
RTCSTREAM = {
    "STREAMS": {
        "flip": "tests.streams.flip",
        "video-send": "tests.streams.video_send",
        "video-receive": "tests.streams.video_receive",
        "echo": "tests.streams.echo",
        "audio-send": "tests.streams.audio_send",
        "tone": "tests.streams.tone",
        "av": "tests.streams.av",
        "av-send": "tests.streams.av_send",
        "av-receive": "tests.streams.av_receive",
        "limited": "tests.streams.limited",
        "timed": "tests.streams.timed",
        "faulty": "tests.streams.faulty",
        "faulty_audio": "tests.streams.faulty_audio",
        "gain": "tests.streams.gain",
        "slow": "tests.streams.slow",
        "blocking_echo": "tests.streams.blocking_echo",
        "socket_aware": "tests.streams.socket_aware",
        "slow_start": "tests.streams.slow_start",
        "swallows_cancel": "tests.streams.swallows_cancel",
        "ignores_cancel": "tests.streams.ignores_cancel",
        "failing_start": "tests.streams.failing_start",
        "chunky_reply": "tests.streams.chunky_reply",
        "refuse": "tests.streams.refuse",
        "int_steps": "tests.streams.int_steps",
        "in_order": "tests.streams.in_order",
        "report": "tests.streams.report",
    },
    "ICE_HOST_ADDRESSES": ["127.0.0.1"],
    # RTCSTREAM_TEST_CONNECT_TIMEOUT: a server subprocess's own (tests/churn.py).
    "CONNECT_TIMEOUT": float(os.environ.get("RTCSTREAM_TEST_CONNECT_TIMEOUT", "10")),
    "EARLY_CANDIDATE_WAIT": 1.0,
}
# tests/churn.py: a server subprocess releasing memory sooner, or not at all.
if os.environ.get("RTCSTREAM_TEST_HEARTBEAT_INTERVAL"):
    RTCSTREAM["HEARTBEAT_INTERVAL"] = float(os.environ["RTCSTREAM_TEST_HEARTBEAT_INTERVAL"])
# tests/test_drain.py, tests/test_shutdown.py: a server subprocess's own drain on SIGTERM.
if os.environ.get("RTCSTREAM_TEST_DRAIN_TIMEOUT"):
    RTCSTREAM["DRAIN_TIMEOUT"] = float(os.environ["RTCSTREAM_TEST_DRAIN_TIMEOUT"])
if os.environ.get("RTCSTREAM_TEST_METRICS_TOKEN"):
    RTCSTREAM["METRICS_TOKEN"] = os.environ["RTCSTREAM_TEST_METRICS_TOKEN"]
if os.environ.get("RTCSTREAM_TEST_TRIM_MEMORY"):
    RTCSTREAM["TRIM_MEMORY"] = os.environ["RTCSTREAM_TEST_TRIM_MEMORY"] == "1"
