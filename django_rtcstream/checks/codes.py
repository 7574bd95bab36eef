"""Every check id in one place, and the stream names the app's routes take."""

from __future__ import annotations

# Names the app's own routes take (urls.py); no stream may be registered under them.
RESERVED_NAMES = ("streams", "sessions", "health")


class Codes:
    """Every check id, in one place, never reused."""

    NOT_A_DICT = "django_rtcstream.E001"
    UNKNOWN_KEY = "django_rtcstream.W001"
    STREAM_IMPORT = "django_rtcstream.E002"
    STREAM_NAME = "django_rtcstream.E004"
    BAD_NUMBER = "django_rtcstream.E009"
    NO_CHANNEL_LAYER = "django_rtcstream.E007"
    BAD_ICE = "django_rtcstream.E010"
    NO_DRF = "django_rtcstream.E008"
    BAD_LEASE = "django_rtcstream.E011"
    BAD_PERMISSIONS = "django_rtcstream.E012"
    BAD_TURN = "django_rtcstream.E013"
    REDIS_SOCKET_TIMEOUT = "django_rtcstream.W002"
    DIRECT_OFFERS_SKIP_CORS = "django_rtcstream.W003"
    VAD_UNAVAILABLE = "django_rtcstream.E014"
    # manage.py check --deploy
    DEPLOY_IN_MEMORY_LAYER = "django_rtcstream.W101"
    DEPLOY_LOCAL_CACHE = "django_rtcstream.W102"
    DEPLOY_SQLITE_SHARED = "django_rtcstream.W103"
    DEPLOY_OPEN_SESSIONS = "django_rtcstream.W104"
    DEPLOY_UNSIGNED_TELEPHONE = "django_rtcstream.W105"
    DEPLOY_NO_ICE_SERVERS = "django_rtcstream.W106"
    DEPLOY_LOOPBACK_ICE = "django_rtcstream.W107"
    DEPLOY_SHORT_TURN_SECRET = "django_rtcstream.W108"
