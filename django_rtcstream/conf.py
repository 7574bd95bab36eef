"""The app's settings: one ``RTCSTREAM`` dict overlaid on ``DEFAULTS``.

Read only through ``rtc_settings``, never at import time; the cache resets on
``setting_changed`` so ``override_settings(RTCSTREAM=...)`` works in tests.
Validation lives in ``checks.py``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # name -> dotted path of a Stream (or a zero-argument factory returning one)
    "STREAMS": {},
    # ICE servers offered to clients: a dict, or the dotted path of a sync/async callable
    "RTC_CONFIGURATION": None,
    # ICE servers of the server's own peer connections: a list, or the dotted path of a
    # sync callable returning one (called for every session, e.g.
    # "django_rtcstream.turn.server_ice_servers"). Empty by default: aiortc would
    # otherwise use a public STUN server.
    "SERVER_ICE_SERVERS": [],
    # "all" or "relay": "relay" makes the server's own peer connections gather and use
    # relayed (TURN) candidates only (needs a TURN server in SERVER_ICE_SERVERS)
    "SERVER_ICE_TRANSPORT_POLICY": "all",
    # coturn's static-auth-secret (use-auth-secret): django_rtcstream.turn mints
    # time-limited credentials with it
    "TURN_SECRET": None,
    # URIs of that TURN server, e.g. ["turn:turn.example.com:3478?transport=udp"]
    "TURN_URLS": [],
    # Seconds minted TURN credentials stay valid (the TURN server checks them again at
    # every allocation refresh, so longer than the longest session)
    "TURN_TTL": 86400,
    # True: django_rtcstream.turn.rtc_configuration tells clients
    # "iceTransportPolicy": "relay" (they offer relayed candidates only)
    "TURN_RELAY_ONLY": False,
    # Local addresses host candidates are gathered on; None keeps aioice's choice
    # (every interface but loopback). ["127.0.0.1"] makes loopback-only setups work.
    "ICE_HOST_ADDRESSES": None,
    # (low, high): UDP ports host candidates bind to, for firewalls and containers
    "UDP_PORT_RANGE": None,
    # Seconds a session may take from offer to "connected" before it is closed
    "CONNECT_TIMEOUT": 30.0,
    # Seconds a trickled candidate waits for its offer to be registered
    "EARLY_CANDIDATE_WAIT": 5.0,
    # Threads running sync handlers, per worker process
    "HANDLER_THREADS": min(32, (os.cpu_count() or 1) * 4),
    # Seconds after which a sync handler call that has not returned stops counting
    # against HANDLER_THREADS (another thread takes its place; see sessions/pool.py)
    "HANDLER_STUCK_AFTER": 1.0,
    # Seconds a handler's wait_for_args() waits for the client's inputs before it
    # returns False; None waits for ever (FastRTC's behaviour)
    "WAIT_FOR_ARGS_TIMEOUT": 10.0,
    # Largest signaling request body, bytes
    "MAX_SIGNALING_BYTES": 256 * 1024,
    # Frames the server's audio jitter buffer holds before releasing (aiortc: 4);
    # None keeps aiortc's own buffer
    "AUDIO_PREFETCH": 1,
    # True: that hold grows to the depth of the reordering seen on the link (at most 6
    # frames) and steps back down once the link is calm; False keeps it fixed
    "AUDIO_ADAPTIVE": True,
    # True: the server's video receiver releases a frame when its last packet (RTP marker
    # bit) arrives, not when the next frame starts (aiortc: one frame period later)
    "VIDEO_MARKER_RELEASE": True,
    # True: HTTP offers (POSTs that resolve to the offer view) are answered by
    # rtcstream_application's ASGI app without Django's request cycle and middleware,
    # with the session and user read as SessionMiddleware/AuthenticationMiddleware
    # would (about a third of an offer's time; more with simultaneous offers).
    # False: they go through the full Django stack like any other request.
    "DIRECT_OFFERS": True,
    # True: once the worker has warmed up (after its first HTTP request), gc.freeze()
    # moves everything imported so far out of the cyclic collector's reach, so its full
    # passes (which hold the GIL: every session's media waits) scan only what sessions
    # allocate: ~100-300 ms less per pass for a Django + aiortc worker
    "GC_FREEZE": True,
    # Channel layer alias used for the control bus
    "CHANNEL_LAYER_ALIAS": "default",
    # Seconds between keep-alive comments on SSE output streams
    "SSE_KEEPALIVE": 15,
    # Name of this worker process in session records (default: host:pid)
    "WORKER_NAME": None,
    # Seconds between a worker's heartbeats on its live sessions
    "HEARTBEAT_INTERVAL": 5.0,
    # Seconds without a heartbeat after which any worker reaps a session (marked failed)
    "SESSION_LEASE": 30.0,
    # True: once sessions have ended, the next heartbeat gives the heap memory they freed
    # back to the OS (glibc's malloc_trim, after gc.collect() when no session is live;
    # nothing elsewhere), so RSS follows what the worker holds (see sessions/memory.py)
    "TRIM_MEMORY": True,
    # Seconds between samples of each session's network and media figures (RTT, jitter,
    # loss, bitrate, frames; see sessions/stats.py); 0 turns sampling off
    "STATS_INTERVAL": 2.0,
    # Samples of the charted figures kept on the record (60: two minutes at 2 s)
    "STATS_HISTORY": 60,
    # Days finished sessions are kept (rtcstream_sessions --purge)
    "SESSION_RETENTION_DAYS": 30,
    # DRF permission classes per action: "open", "input", "outputs", "close"
    "PERMISSION_CLASSES": {},
    # True: the webrtc_id alone grants input/outputs/close (FastRTC's model)
    "OPEN_SESSIONS": False,
    # Twilio auth token: when set, webhooks and Media Streams must be signed by Twilio
    "TWILIO_AUTH_TOKEN": None,
    # The scheme and host Twilio uses to reach this site, when behind a proxy
    "TELEPHONE_PUBLIC_URL": None,
    # Force "ws" or "wss" in the TwiML stream URL (default: wss for https, ws for http)
    "TELEPHONE_WS_SCHEME": None,
    # DRF permission classes of the sessions API
    "SESSIONS_API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # DRF permission classes of <prefix>/metrics (for people; scrapers use METRICS_TOKEN)
    "METRICS_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # A secret a scraper sends as "Authorization: Bearer <token>" to read <prefix>/metrics;
    # None: only what METRICS_PERMISSION_CLASSES allow (staff)
    "METRICS_TOKEN": None,
    # Seconds between a worker's looks at its sessions' frame counters and handler pool
    # for the metrics (and its event loop's worst lag over that time)
    "METRICS_INTERVAL": 1.0,
    # Seconds a draining worker (SIGTERM, manage.py rtcstream_drain) gives its live
    # sessions to end before it closes them as server_shutdown; 0 closes them at once
    "DRAIN_TIMEOUT": 30.0,
}


@functools.cache
def _merged() -> dict[str, Any]:
    user = getattr(settings, "RTCSTREAM", {})
    if not isinstance(user, dict):
        user = {}
    return {**DEFAULTS, **user}


class RtcSettings:
    """Attribute access to the merged settings: ``rtc_settings.CONNECT_TIMEOUT``."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid RTCSTREAM setting: {name!r}")
        return _merged()[name]

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "RTCSTREAM", {})
        return value if isinstance(value, dict) else {}

    def worker_name(self) -> str:
        import socket

        return self.WORKER_NAME or f"{socket.gethostname()}:{os.getpid()}"


rtc_settings = RtcSettings()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "RTCSTREAM":
        _merged.cache_clear()  # the registry resets itself too (registry._reset)
