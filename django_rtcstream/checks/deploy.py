"""``check_deploy`` (``manage.py check --deploy``): settings that work on one machine
and not in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning

from django_rtcstream.checks.codes import Codes

# Characters below which check_deploy calls a TURN secret guessable.
MIN_TURN_SECRET = 32


def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``manage.py check --deploy``: settings that work on one machine and not in production."""
    import ipaddress

    value = getattr(settings, "RTCSTREAM", {})
    if not isinstance(value, dict):
        return []  # check_settings reports it
    messages: list[CheckMessage] = []
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get(
        value.get("CHANNEL_LAYER_ALIAS", "default"), {}
    )
    in_memory = "InMemoryChannelLayer" in str(layer.get("BACKEND", ""))
    if in_memory:
        messages.append(
            Warning(
                "The channel layer is in memory: inputs, outputs, admin actions and candidates reach "
                "only sessions of the same process, so a second worker cannot reach the first's.",
                hint="Use channels_redis (the 'redis' extra) when you run more than one worker.",
                id=Codes.DEPLOY_IN_MEMORY_LAYER,
            )
        )
    cache_backend = str(
        getattr(settings, "CACHES", {})
        .get("default", {})
        .get("BACKEND", "django.core.cache.backends.locmem.LocMemCache")
    )
    if "locmem" in cache_backend or "dummy" in cache_backend:
        messages.append(
            Warning(
                "The default cache is local to each process: the latest output "
                "(fetch_latest_output) and SSE tickets are not shared between workers.",
                hint="Point CACHES['default'] at Redis (django.core.cache.backends.redis.RedisCache).",
                id=Codes.DEPLOY_LOCAL_CACHE,
            )
        )
    engine = str(settings.DATABASES.get("default", {}).get("ENGINE", ""))
    if "sqlite" in engine and not in_memory:
        messages.append(
            Warning(
                "Sessions are recorded in SQLite while the channel layer is shared between workers: "
                "several workers writing one SQLite file queue on its lock, and workers on other "
                "hosts cannot see it.",
                hint="Use PostgreSQL (the 'postgres' extra) for several workers.",
                id=Codes.DEPLOY_SQLITE_SHARED,
            )
        )
    if value.get("OPEN_SESSIONS") is True:
        messages.append(
            Warning(
                "RTCSTREAM['OPEN_SESSIONS'] is on: anyone who learns a webrtc_id may set its inputs, "
                "read its outputs and close it.",
                hint="Leave it off unless every client is trusted; clients then send the session token.",
                id=Codes.DEPLOY_OPEN_SESSIONS,
            )
        )
    if not value.get("TWILIO_AUTH_TOKEN") and _has_audio_stream(value):
        messages.append(
            Warning(
                "Audio streams answer phone calls (…/telephone/incoming) but RTCSTREAM"
                "['TWILIO_AUTH_TOKEN'] is not set: anyone can open a call to them.",
                hint="Set TWILIO_AUTH_TOKEN to your Twilio account's auth token, so requests must be "
                "signed by Twilio.",
                id=Codes.DEPLOY_UNSIGNED_TELEPHONE,
            )
        )
    if value.get("RTC_CONFIGURATION") is None:
        messages.append(
            Warning(
                "No ICE servers are offered to clients (RTCSTREAM['RTC_CONFIGURATION'] is None): "
                "clients behind NAT or a firewall will not connect.",
                hint="Offer STUN/TURN servers, e.g. time-limited TURN credentials from a callable.",
                id=Codes.DEPLOY_NO_ICE_SERVERS,
            )
        )
    secret = value.get("TURN_SECRET")
    if isinstance(secret, str) and 0 < len(secret) < MIN_TURN_SECRET:
        messages.append(
            Warning(
                f"RTCSTREAM['TURN_SECRET'] has {len(secret)} characters: anyone who guesses it "
                "can mint credentials and relay through your TURN server.",
                hint=f"Use at least {MIN_TURN_SECRET} random characters, e.g. "
                "`openssl rand -hex 32`, in both coturn's static-auth-secret and TURN_SECRET.",
                id=Codes.DEPLOY_SHORT_TURN_SECRET,
            )
        )
    addresses = value.get("ICE_HOST_ADDRESSES")
    if (
        isinstance(addresses, (list, tuple))
        and addresses
        and all(_is_loopback(a, ipaddress) for a in addresses)
    ):
        messages.append(
            Warning(
                "RTCSTREAM['ICE_HOST_ADDRESSES'] lists loopback addresses only: no client on another "
                "machine can reach the server's media.",
                hint="List the server's public or LAN addresses, or None for every interface.",
                id=Codes.DEPLOY_LOOPBACK_ICE,
            )
        )
    return messages


def _is_loopback(address: Any, ipaddress: Any) -> bool:
    try:
        return bool(ipaddress.ip_address(str(address)).is_loopback)
    except ValueError:
        return False


def _has_audio_stream(value: dict[str, Any]) -> bool:
    from django_rtcstream import registry

    for name in registry.stream_names():
        try:
            if registry.get_stream(name).modality == "audio":
                return True
        except Exception:  # check_streams reports it
            continue
    return False
