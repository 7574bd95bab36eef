"""The test project as one of several workers: PostgreSQL, Redis channel layer and cache.

Used by tests/test_multiworker.py, which starts two uvicorn processes with it.
REDIS_URL and DATABASE_URL name the services; RTCSTREAM_TEST_DB the database;
RTCSTREAM_TEST_HEARTBEAT and RTCSTREAM_TEST_LEASE (seconds) the heartbeat interval and
the session lease (tests/test_worker_faults.py).
"""

import os
from urllib.parse import urlsplit

from tests.settings import *  # noqa: F403
from tests.settings import RTCSTREAM

_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("RTCSTREAM_TEST_DB", _db.path.lstrip("/") or "test"),
        "USER": _db.username or "postgres",
        "PASSWORD": _db.password or "",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": _db.port or 5432,
    }
}
_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_prefix = os.environ.get("RTCSTREAM_TEST_PREFIX", "rtcstream-test")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # A plain URL on purpose: redis-py's default 5 s socket timeout must not end sessions
        # (test_a_session_outlives_the_redis_socket_timeout); deployments should still set
        # {"address": ..., "socket_timeout": None} (check W002).
        "CONFIG": {
            # RTCSTREAM_TEST_REDIS_NO_TIMEOUT=1: as the deployment guide says (tests/test_nginx.py)
            "hosts": [{"address": _redis, "socket_timeout": None}]
            if os.environ.get("RTCSTREAM_TEST_REDIS_NO_TIMEOUT") == "1"
            else [_redis],
            "prefix": _prefix,
        },
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _redis,
        "KEY_PREFIX": _prefix,
    }
}
RTCSTREAM = {
    **RTCSTREAM,
    "HEARTBEAT_INTERVAL": float(os.environ.get("RTCSTREAM_TEST_HEARTBEAT", "0.5")),
    "SESSION_LEASE": float(os.environ.get("RTCSTREAM_TEST_LEASE", "2.0")),
    "WORKER_NAME": os.environ.get("RTCSTREAM_WORKER_NAME"),
    # SIGTERM drains (tests/workers.py stops workers with it): briefly, unless a test says
    "DRAIN_TIMEOUT": float(os.environ.get("RTCSTREAM_TEST_DRAIN_TIMEOUT", "2")),
}
