"""Every system check id, old and new, fires where it should, and nothing else fires."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings

from django_rtcstream.checks import Codes

# The deploy checks read DATABASES; nothing here opens a connection.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

BASE = dict(settings.RTCSTREAM)
REDIS = {"BACKEND": "channels_redis.core.RedisChannelLayer"}
REDIS_OK = {
    "default": {
        **REDIS,
        "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}]},
    }
}
REDIS_SHORT = {"default": {**REDIS, "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}}
POSTGRES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}}
REDIS_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/1",
    }
}
TURN_URL = "turn:turn.example.org:3478?transport=udp"
TURN_SECRET = "0123456789abcdef0123456789abcdef"  # 32 characters: long enough for W108
TURN = {"TURN_SECRET": TURN_SECRET, "TURN_URLS": [TURN_URL]}
# A deployment-ready configuration: no deploy warning fires for it.
READY = {
    **BASE,
    **TURN,
    "RTC_CONFIGURATION": "django_rtcstream.turn.rtc_configuration",
    "SERVER_ICE_SERVERS": "django_rtcstream.turn.server_ice_servers",
    "SERVER_ICE_TRANSPORT_POLICY": "relay",
    "TURN_RELAY_ONLY": True,
    "ICE_HOST_ADDRESSES": None,
    "TWILIO_AUTH_TOKEN": "secret",
}


def ours(deploy: bool = False) -> list[str]:
    return sorted(
        m.id
        for m in run_checks(include_deployment_checks=deploy)
        if m.id and m.id.startswith("django_rtcstream")
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"RTCSTREAM": []}, [Codes.NOT_A_DICT]),
        ({"RTCSTREAM": {**BASE, "STREMS": {}}}, [Codes.UNKNOWN_KEY]),
        (
            {"RTCSTREAM": {**BASE, "STREAMS": {"x": "tests.streams.does_not_exist"}}},
            [Codes.STREAM_IMPORT],
        ),
        (
            {"RTCSTREAM": {**BASE, "STREAMS": {"Bad Name": "tests.streams.flip"}}},
            [Codes.STREAM_NAME],
        ),
        ({"CHANNEL_LAYERS": {}}, [Codes.NO_CHANNEL_LAYER]),
        (
            {"INSTALLED_APPS": [a for a in settings.INSTALLED_APPS if a != "rest_framework"]},
            [Codes.NO_DRF],
        ),
        ({"RTCSTREAM": {**BASE, "CONNECT_TIMEOUT": -1}}, [Codes.BAD_NUMBER]),
        ({"RTCSTREAM": {**BASE, "UDP_PORT_RANGE": (10, 5)}}, [Codes.BAD_ICE]),
        ({"RTCSTREAM": {**BASE, "SESSION_LEASE": 1, "HEARTBEAT_INTERVAL": 5}}, [Codes.BAD_LEASE]),
        ({"RTCSTREAM": {**BASE, "PERMISSION_CLASSES": {"read": []}}}, [Codes.BAD_PERMISSIONS]),
        ({"CHANNEL_LAYERS": REDIS_SHORT}, [Codes.REDIS_SOCKET_TIMEOUT]),
        (
            {"MIDDLEWARE": ["corsheaders.middleware.CorsMiddleware"]},
            [Codes.DIRECT_OFFERS_SKIP_CORS],
        ),
        ({"RTCSTREAM": {**BASE, "TURN_URLS": [TURN_URL]}}, [Codes.BAD_TURN]),
        ({"RTCSTREAM": {**BASE, "TURN_SECRET": TURN_SECRET}}, [Codes.BAD_TURN]),
        (
            {"RTCSTREAM": {**BASE, **TURN, "TURN_URLS": ["turn.example.org:3478"]}},
            [Codes.BAD_TURN],
        ),
        ({"RTCSTREAM": {**BASE, **TURN, "TURN_TTL": 0}}, [Codes.BAD_TURN]),
        ({"RTCSTREAM": {**BASE, "SERVER_ICE_TRANSPORT_POLICY": "none"}}, [Codes.BAD_TURN]),
        ({"RTCSTREAM": {**BASE, "SERVER_ICE_TRANSPORT_POLICY": "relay"}}, [Codes.BAD_TURN]),
        ({"RTCSTREAM": {**BASE, "TURN_RELAY_ONLY": "yes"}}, [Codes.BAD_NUMBER]),
    ],
)
def test_each_check_fires_alone(overrides, expected):
    with override_settings(**overrides):
        assert ours() == expected


def test_the_test_project_passes_the_checks():
    assert ours() == []


def test_deploy_checks_on_the_embedded_defaults():
    # The test project runs like `make run`: one process, in memory, loopback only.
    assert ours(deploy=True) == sorted(
        [
            Codes.DEPLOY_IN_MEMORY_LAYER,
            Codes.DEPLOY_LOCAL_CACHE,
            Codes.DEPLOY_UNSIGNED_TELEPHONE,
            Codes.DEPLOY_NO_ICE_SERVERS,
            Codes.DEPLOY_LOOPBACK_ICE,
        ]
    )


def test_a_production_configuration_passes_the_deploy_checks():
    with override_settings(
        RTCSTREAM=READY, CHANNEL_LAYERS=REDIS_OK, CACHES=REDIS_CACHE, DATABASES=POSTGRES
    ):
        assert ours(deploy=True) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"CHANNEL_LAYERS": {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}},
            [Codes.DEPLOY_IN_MEMORY_LAYER],
        ),
        (
            {"CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}},
            [Codes.DEPLOY_LOCAL_CACHE],
        ),
        (
            {"DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}},
            [Codes.DEPLOY_SQLITE_SHARED],
        ),
        ({"RTCSTREAM": {**READY, "OPEN_SESSIONS": True}}, [Codes.DEPLOY_OPEN_SESSIONS]),
        ({"RTCSTREAM": {**READY, "TWILIO_AUTH_TOKEN": None}}, [Codes.DEPLOY_UNSIGNED_TELEPHONE]),
        ({"RTCSTREAM": {**READY, "RTC_CONFIGURATION": None}}, [Codes.DEPLOY_NO_ICE_SERVERS]),
        (
            {"RTCSTREAM": {**READY, "ICE_HOST_ADDRESSES": ["127.0.0.1", "::1"]}},
            [Codes.DEPLOY_LOOPBACK_ICE],
        ),
        ({"RTCSTREAM": {**READY, "TURN_SECRET": "short"}}, [Codes.DEPLOY_SHORT_TURN_SECRET]),
        ({"CHANNEL_LAYERS": REDIS_SHORT}, [Codes.REDIS_SOCKET_TIMEOUT]),
    ],
)
def test_each_deploy_check_fires_alone(overrides, expected):
    production = {
        "RTCSTREAM": READY,
        "CHANNEL_LAYERS": REDIS_OK,
        "CACHES": REDIS_CACHE,
        "DATABASES": POSTGRES,
    }
    with override_settings(**{**production, **overrides}):
        assert ours(deploy=True) == expected


def test_telephone_warning_needs_an_audio_stream():
    video_only = {**READY, "TWILIO_AUTH_TOKEN": None, "STREAMS": {"flip": "tests.streams.flip"}}
    with override_settings(
        RTCSTREAM=video_only, CHANNEL_LAYERS=REDIS_OK, CACHES=REDIS_CACHE, DATABASES=POSTGRES
    ):
        assert ours(deploy=True) == []


def test_every_check_id_is_exercised_here():
    # A new id in Codes must get its own case above.
    import pathlib

    text = pathlib.Path(__file__).read_text()
    names = [n for n in vars(Codes) if not n.startswith("_")]
    assert [n for n in names if f"Codes.{n}" not in text] == []


def test_the_vad_check_fires_in_the_test_that_can_take_the_vad_away():
    """Codes.VAD_UNAVAILABLE needs the ``vad`` extra unimportable, which only a process
    of its own can arrange: tests/test_vad_offline.py runs ``manage.py check`` there."""
    import pathlib

    text = (pathlib.Path(__file__).parent / "test_vad_offline.py").read_text()
    assert f'"{Codes.VAD_UNAVAILABLE}" in result.stderr' in text
