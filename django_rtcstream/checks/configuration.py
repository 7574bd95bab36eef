"""``check_settings``: the ``RTCSTREAM`` dict itself (keys, numbers, ICE, TURN, the
channel layer, permissions), each mistake with a hint that says what to write."""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from django_rtcstream.checks.codes import Codes
from django_rtcstream.conf import DEFAULTS

_POSITIVE = (
    "CONNECT_TIMEOUT",
    "EARLY_CANDIDATE_WAIT",
    "HANDLER_THREADS",
    "SSE_KEEPALIVE",
    "MAX_SIGNALING_BYTES",
    "HEARTBEAT_INTERVAL",
    "SESSION_LEASE",
    "SESSION_RETENTION_DAYS",
)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "RTCSTREAM", {})
    if not isinstance(value, dict):
        return [
            Error(
                "RTCSTREAM must be a dict.",
                hint="RTCSTREAM = {'STREAMS': {...}}",
                id=Codes.NOT_A_DICT,
            )
        ]
    messages: list[CheckMessage] = []
    for key in value:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1)
            messages.append(
                Warning(
                    f"Unknown RTCSTREAM key {key!r}.",
                    hint=f"Did you mean {close[0]!r}?"
                    if close
                    else f"Valid keys: {', '.join(DEFAULTS)}",
                    id=Codes.UNKNOWN_KEY,
                )
            )
    for key in _POSITIVE:
        v = value.get(key, DEFAULTS[key])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            messages.append(
                Error(
                    f"RTCSTREAM[{key!r}] must be a positive number, got {v!r}.",
                    hint=f"Remove it to use the default {DEFAULTS[key]!r}.",
                    id=Codes.BAD_NUMBER,
                )
            )
    prefetch = value.get("AUDIO_PREFETCH", DEFAULTS["AUDIO_PREFETCH"])
    if prefetch is not None and (
        isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 0 <= prefetch <= 15
    ):
        messages.append(
            Error(
                f"RTCSTREAM['AUDIO_PREFETCH'] must be an int in 0-15 or None, got {prefetch!r}.",
                hint="1 holds one 20 ms frame; aiortc's own default is 4; "
                "None keeps aiortc's buffer.",
                id=Codes.BAD_NUMBER,
            )
        )
    for key, hint in (
        ("AUDIO_ADAPTIVE", "True lets the audio jitter buffer's hold follow the link."),
        ("VIDEO_MARKER_RELEASE", "True releases each video frame on its last packet."),
        ("DIRECT_OFFERS", "True answers offers before Django's middleware."),
        ("TRIM_MEMORY", "True gives memory freed by ended sessions back to the OS."),
        ("GC_FREEZE", "True freezes the import-time heap after the warm-up."),
        ("TURN_RELAY_ONLY", "True tells clients to use relayed (TURN) candidates only."),
    ):
        flag = value.get(key, DEFAULTS[key])
        if not isinstance(flag, bool):
            messages.append(
                Error(
                    f"RTCSTREAM[{key!r}] must be True or False, got {flag!r}.",
                    hint=hint,
                    id=Codes.BAD_NUMBER,
                )
            )
    interval = value.get("HEARTBEAT_INTERVAL", DEFAULTS["HEARTBEAT_INTERVAL"])
    lease = value.get("SESSION_LEASE", DEFAULTS["SESSION_LEASE"])
    if (
        isinstance(interval, (int, float))
        and isinstance(lease, (int, float))
        and lease < 2 * interval
    ):
        messages.append(
            Error(
                "RTCSTREAM['SESSION_LEASE'] must be at least twice HEARTBEAT_INTERVAL.",
                hint="Otherwise live sessions of healthy workers get reaped.",
                id=Codes.BAD_LEASE,
            )
        )
    perms = value.get("PERMISSION_CLASSES", {})
    if not isinstance(perms, dict) or set(perms) - {"open", "input", "outputs", "close"}:
        messages.append(
            Error(
                "RTCSTREAM['PERMISSION_CLASSES'] must map 'open', 'input', "
                "'outputs' or 'close' to lists of permission classes.",
                hint="e.g. {'open': ['rest_framework.permissions.IsAuthenticated']}",
                id=Codes.BAD_PERMISSIONS,
            )
        )
    hosts = value.get("ICE_HOST_ADDRESSES")
    if hosts is not None and (
        not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) for h in hosts)
    ):
        messages.append(
            Error(
                "RTCSTREAM['ICE_HOST_ADDRESSES'] must be a list of IP address strings.",
                hint="For example ['127.0.0.1'].",
                id=Codes.BAD_ICE,
            )
        )
    ports = value.get("UDP_PORT_RANGE")
    if ports is not None and not (
        isinstance(ports, (list, tuple))
        and len(ports) == 2
        and all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
        and 1024 <= ports[0] <= ports[1] <= 65535
    ):
        messages.append(
            Error(
                f"RTCSTREAM['UDP_PORT_RANGE'] must be (low, high) ports, got {ports!r}.",
                hint="For example (40000, 40100).",
                id=Codes.BAD_ICE,
            )
        )
    servers = value.get("SERVER_ICE_SERVERS", [])
    if not isinstance(servers, (list, str)) and not callable(servers):
        messages.append(
            Error(
                "RTCSTREAM['SERVER_ICE_SERVERS'] must be a list of "
                "{'urls': ..., 'username': ..., 'credential': ...} dicts, or the dotted path "
                "of a callable returning one.",
                hint="Use [] for none, or 'django_rtcstream.turn.server_ice_servers'.",
                id=Codes.BAD_ICE,
            )
        )
    messages += _check_turn(value)
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    alias = value.get("CHANNEL_LAYER_ALIAS", "default")
    if alias not in layers:
        messages.append(
            Error(
                f"CHANNEL_LAYERS has no {alias!r} layer; django-rtcstream needs one "
                "to reach sessions from any worker.",
                hint="Single process: {'default': {'BACKEND': "
                "'channels.layers.InMemoryChannelLayer'}}; several: channels_redis.",
                id=Codes.NO_CHANNEL_LAYER,
            )
        )
    layer = layers.get(alias, {})
    if "channels_redis" in str(layer.get("BACKEND", "")) and _redis_times_out(layer):
        messages.append(
            Warning(
                "The channels_redis layer uses redis-py's default socket timeout, which cuts the "
                "5 s blocking reads that reach sessions: control messages can be delayed or lost.",
                hint="Give each host as {'address': 'redis://...', 'socket_timeout': None}.",
                id=Codes.REDIS_SOCKET_TIMEOUT,
            )
        )
    if value.get("DIRECT_OFFERS", DEFAULTS["DIRECT_OFFERS"]) is True and any(
        "corsheaders" in m for m in getattr(settings, "MIDDLEWARE", [])
    ):
        messages.append(
            Warning(
                "Offers are answered before Django's middleware (RTCSTREAM['DIRECT_OFFERS']), so "
                "django-cors-headers adds no CORS headers to them: cross-origin clients cannot post offers.",
                hint="Set RTCSTREAM['DIRECT_OFFERS'] = False if offers come from other origins.",
                id=Codes.DIRECT_OFFERS_SKIP_CORS,
            )
        )
    if "rest_framework" not in settings.INSTALLED_APPS:
        messages.append(
            Error(
                "'rest_framework' must be in INSTALLED_APPS.",
                hint="Add 'rest_framework' before 'django_rtcstream'.",
                id=Codes.NO_DRF,
            )
        )
    return messages


def _check_turn(value: dict[str, Any]) -> list[CheckMessage]:
    """TURN_* and SERVER_ICE_TRANSPORT_POLICY: what django_rtcstream.turn needs to mint."""
    from django_rtcstream.media import ice
    from django_rtcstream.turn import URI_SCHEMES

    messages: list[CheckMessage] = []

    def error(message: str, hint: str) -> None:
        messages.append(Error(message, hint=hint, id=Codes.BAD_TURN))

    secret = value.get("TURN_SECRET")
    urls = value.get("TURN_URLS", [])
    ttl = value.get("TURN_TTL", DEFAULTS["TURN_TTL"])
    example = "['turn:turn.example.com:3478?transport=udp']"
    if secret is not None and not isinstance(secret, str):
        error(
            f"RTCSTREAM['TURN_SECRET'] must be a string, got {type(secret).__name__}.",
            "The TURN server's static-auth-secret, e.g. from an environment variable.",
        )
    if not isinstance(urls, (list, tuple)) or not all(
        isinstance(u, str) and u.startswith(URI_SCHEMES) for u in urls
    ):
        error(
            f"RTCSTREAM['TURN_URLS'] must be a list of stun:/turn:/turns: URIs, got {urls!r}.",
            f"For example {example}.",
        )
    elif urls and not secret:
        error(
            "RTCSTREAM['TURN_URLS'] is set but TURN_SECRET is not: no credentials can be minted.",
            "Set TURN_SECRET to the TURN server's static-auth-secret (use-auth-secret).",
        )
    elif secret and not urls:
        error(
            "RTCSTREAM['TURN_SECRET'] is set but TURN_URLS is empty: credentials for no server.",
            f"List the TURN server's URIs, e.g. {example}.",
        )
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        error(
            f"RTCSTREAM['TURN_TTL'] must be a positive int (seconds), got {ttl!r}.",
            f"Remove it to use the default {DEFAULTS['TURN_TTL']!r} (a day).",
        )
    policy = value.get("SERVER_ICE_TRANSPORT_POLICY", DEFAULTS["SERVER_ICE_TRANSPORT_POLICY"])
    if policy not in ice.TRANSPORT_POLICIES:
        error(
            f"RTCSTREAM['SERVER_ICE_TRANSPORT_POLICY'] must be 'all' or 'relay', got {policy!r}.",
            "'relay' makes the server's peer connections use TURN candidates only.",
        )
    elif policy == "relay" and not ice.relay_only_supported():
        error(
            "RTCSTREAM['SERVER_ICE_TRANSPORT_POLICY'] is 'relay', which this aiortc cannot "
            "honour (it has no iceTransportPolicy).",
            "Install aiortc 1.16 or later, or use 'all'.",
        )
    elif policy == "relay" and value.get("SERVER_ICE_SERVERS", []) in ([], None):
        error(
            "RTCSTREAM['SERVER_ICE_TRANSPORT_POLICY'] is 'relay' but SERVER_ICE_SERVERS is "
            "empty: the server would gather no candidate and no session could connect.",
            "Set SERVER_ICE_SERVERS = 'django_rtcstream.turn.server_ice_servers' "
            "(or a list with a turn: server).",
        )
    return messages


def _redis_times_out(layer: dict[str, Any]) -> bool:
    """Whether redis-py (8 and later: a 5 s default) would time out channels-redis reads."""
    try:
        import redis
    except ImportError:
        return False
    if int(redis.__version__.split(".")[0]) < 8:
        return False
    hosts = (layer.get("CONFIG") or {}).get("hosts") or ["redis://localhost:6379"]
    for host in hosts:
        timeout = host.get("socket_timeout", 5) if isinstance(host, dict) else 5
        if timeout is not None and timeout <= 10:  # channels-redis blocks for 5 s
            return True
    return False
