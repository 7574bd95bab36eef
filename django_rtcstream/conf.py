"""The app's settings: one ``RTCSTREAM`` dict overlaid on the defaults below.

Read only through ``rtc_settings``, never at import time; the cache resets on
``setting_changed`` so ``override_settings(RTCSTREAM=...)`` works in tests.
Each key is one typed attribute of :class:`RtcSettings`, with its default and
what it means; ``rtc_settings.CONNECT_TIMEOUT`` is a ``float`` to type
checkers. Validation lives in ``checks/``: the types below are what a value
has once those checks pass.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

if TYPE_CHECKING:  # pragma: no cover
    from rest_framework.permissions import BasePermission

    from django_rtcstream.stream import Stream

T = TypeVar("T")


class Setting(Generic[T]):
    """One key of ``RTCSTREAM``: its default, and the type of its value.

    A descriptor: ``rtc_settings.NAME`` is the project's value, or the default.
    """

    def __init__(self, default: T) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Setting[T]: ...
    @overload
    def __get__(self, obj: RtcSettings, owner: type | None = None) -> T: ...
    def __get__(self, obj: RtcSettings | None, owner: type | None = None) -> T | Setting[T]:
        if obj is None:
            return self
        value: T = _merged()[self.name]  # the project's value: checks/ validates its type
        return value


#: DRF permission classes, each a class or its dotted path.
PermissionClasses = list[str | type["BasePermission"]]


class RtcSettings:
    """Typed attribute access to the merged settings: ``rtc_settings.CONNECT_TIMEOUT``."""

    #: name -> dotted path of a Stream (or of a zero-argument factory returning one)
    STREAMS: Setting[dict[str, str | Stream | Callable[[], Stream]]] = Setting({})
    #: ICE servers offered to clients: a dict, or the dotted path of a sync/async callable
    #: returning one
    RTC_CONFIGURATION: Setting[dict[str, Any] | str | Callable[[], Any] | None] = Setting(None)
    #: ICE servers of the server's own peer connections: a list, or the dotted path of a
    #: sync callable returning one (called for every session, e.g.
    #: "django_rtcstream.turn.server_ice_servers"). Empty by default: aiortc would
    #: otherwise use a public STUN server.
    SERVER_ICE_SERVERS: Setting[list[dict[str, Any]] | str | Callable[[], Any]] = Setting([])
    #: "all" or "relay": "relay" makes the server's own peer connections gather and use
    #: relayed (TURN) candidates only (needs a TURN server in SERVER_ICE_SERVERS)
    SERVER_ICE_TRANSPORT_POLICY: Setting[Literal["all", "relay"]] = Setting("all")
    #: coturn's static-auth-secret (use-auth-secret): django_rtcstream.turn mints
    #: time-limited credentials with it
    TURN_SECRET: Setting[str | None] = Setting(None)
    #: URIs of that TURN server, e.g. ["turn:turn.example.com:3478?transport=udp"]
    TURN_URLS: Setting[list[str]] = Setting([])
    #: Seconds minted TURN credentials stay valid (the TURN server checks them again at
    #: every allocation refresh, so longer than the longest session)
    TURN_TTL: Setting[int] = Setting(86400)
    #: True: django_rtcstream.turn.rtc_configuration tells clients
    #: "iceTransportPolicy": "relay" (they offer relayed candidates only)
    TURN_RELAY_ONLY: Setting[bool] = Setting(False)
    #: Local addresses host candidates are gathered on; None keeps aioice's choice
    #: (every interface but loopback). ["127.0.0.1"] makes loopback-only setups work.
    ICE_HOST_ADDRESSES: Setting[list[str] | None] = Setting(None)
    #: (low, high): UDP ports host candidates bind to, for firewalls and containers
    UDP_PORT_RANGE: Setting[tuple[int, int] | list[int] | None] = Setting(None)
    #: Seconds a session may take from offer to "connected" before it is closed
    CONNECT_TIMEOUT: Setting[float] = Setting(30.0)
    #: Seconds a trickled candidate waits for its offer to be registered
    EARLY_CANDIDATE_WAIT: Setting[float] = Setting(5.0)
    #: Threads running sync handlers, per worker process
    HANDLER_THREADS: Setting[int] = Setting(min(32, (os.cpu_count() or 1) * 4))
    #: Seconds after which a sync handler call that has not returned stops counting
    #: against HANDLER_THREADS (another thread takes its place; see sessions/pool.py)
    HANDLER_STUCK_AFTER: Setting[float] = Setting(1.0)
    #: Seconds a handler's wait_for_args() waits for the client's inputs before it
    #: returns False; None waits for ever (FastRTC's behaviour)
    WAIT_FOR_ARGS_TIMEOUT: Setting[float | None] = Setting(10.0)
    #: Largest signaling request body, bytes
    MAX_SIGNALING_BYTES: Setting[int] = Setting(256 * 1024)
    #: Frames the server's audio jitter buffer holds before releasing (aiortc: 4);
    #: None keeps aiortc's own buffer
    AUDIO_PREFETCH: Setting[int | None] = Setting(1)
    #: True: that hold grows to the depth of the reordering seen on the link (at most 6
    #: frames) and steps back down once the link is calm; False keeps it fixed
    AUDIO_ADAPTIVE: Setting[bool] = Setting(True)
    #: True: the server's video receiver releases a frame when its last packet (RTP marker
    #: bit) arrives, not when the next frame starts (aiortc: one frame period later)
    VIDEO_MARKER_RELEASE: Setting[bool] = Setting(True)
    #: True: HTTP offers (POSTs that resolve to the offer view) are answered by
    #: rtcstream_application's ASGI app without Django's request cycle and middleware,
    #: with the session and user read as SessionMiddleware/AuthenticationMiddleware
    #: would (about a third of an offer's time; more with simultaneous offers).
    #: False: they go through the full Django stack like any other request.
    DIRECT_OFFERS: Setting[bool] = Setting(True)
    #: True: once the worker has warmed up (after its first HTTP request), gc.freeze()
    #: moves everything imported so far out of the cyclic collector's reach, so its full
    #: passes (which hold the GIL: every session's media waits) scan only what sessions
    #: allocate (the time saved per pass: bench/README.md, "Figures the code cites")
    GC_FREEZE: Setting[bool] = Setting(True)
    #: Channel layer alias used for the control bus
    CHANNEL_LAYER_ALIAS: Setting[str] = Setting("default")
    #: Seconds between keep-alive comments on SSE output streams
    SSE_KEEPALIVE: Setting[float] = Setting(15)
    #: Name of this worker process in session records (default: host:pid)
    WORKER_NAME: Setting[str | None] = Setting(None)
    #: Seconds between a worker's heartbeats on its live sessions
    HEARTBEAT_INTERVAL: Setting[float] = Setting(5.0)
    #: Seconds without a heartbeat after which any worker reaps a session (marked failed)
    SESSION_LEASE: Setting[float] = Setting(30.0)
    #: True: once sessions have ended, the next heartbeat gives the heap memory they freed
    #: back to the OS (glibc's malloc_trim, after gc.collect() when no session is live;
    #: nothing elsewhere), so RSS follows what the worker holds (see sessions/memory.py)
    TRIM_MEMORY: Setting[bool] = Setting(True)
    #: Seconds between samples of each session's network and media figures (RTT, jitter,
    #: loss, bitrate, frames; see sessions/stats.py); 0 turns sampling off
    STATS_INTERVAL: Setting[float] = Setting(2.0)
    #: Samples of the charted figures kept on the record (60: two minutes at 2 s)
    STATS_HISTORY: Setting[int] = Setting(60)
    #: Days finished sessions are kept (rtcstream_sessions --purge)
    SESSION_RETENTION_DAYS: Setting[float] = Setting(30)
    #: DRF permission classes (or their dotted paths) per action: "open", "input",
    #: "outputs", "close"
    PERMISSION_CLASSES: Setting[dict[str, PermissionClasses]] = Setting({})
    #: True: the webrtc_id alone grants input/outputs/close (FastRTC's model)
    OPEN_SESSIONS: Setting[bool] = Setting(False)
    #: Twilio auth token: when set, webhooks and Media Streams must be signed by Twilio
    TWILIO_AUTH_TOKEN: Setting[str | None] = Setting(None)
    #: The scheme and host Twilio uses to reach this site, when behind a proxy
    TELEPHONE_PUBLIC_URL: Setting[str | None] = Setting(None)
    #: Force "ws" or "wss" in the TwiML stream URL (default: wss for https, ws for http)
    TELEPHONE_WS_SCHEME: Setting[Literal["ws", "wss"] | None] = Setting(None)
    #: DRF permission classes (or their dotted paths) of the sessions API
    SESSIONS_API_PERMISSION_CLASSES: Setting[PermissionClasses] = Setting(
        ["rest_framework.permissions.IsAdminUser"]
    )
    #: DRF permission classes of <prefix>/metrics (for people; scrapers use METRICS_TOKEN)
    METRICS_PERMISSION_CLASSES: Setting[PermissionClasses] = Setting(
        ["rest_framework.permissions.IsAdminUser"]
    )
    #: A secret a scraper sends as "Authorization: Bearer <token>" to read <prefix>/metrics;
    #: None: only what METRICS_PERMISSION_CLASSES allow (staff)
    METRICS_TOKEN: Setting[str | None] = Setting(None)
    #: Seconds between a worker's looks at its sessions' frame counters and handler pool
    #: for the metrics (and its event loop's worst lag over that time)
    METRICS_INTERVAL: Setting[float] = Setting(1.0)
    #: Seconds a draining worker (SIGTERM, manage.py rtcstream_drain) gives its live
    #: sessions to end before it closes them as server_shutdown; 0 closes them at once
    DRAIN_TIMEOUT: Setting[float] = Setting(30.0)

    if not TYPE_CHECKING:  # type checkers report unknown names themselves

        def __getattr__(self, name: str) -> Any:
            raise AttributeError(f"Invalid RTCSTREAM setting: {name!r}")

    @property
    def user_settings(self) -> dict[str, Any]:
        """The project's ``RTCSTREAM`` as given (empty unless it is a dict)."""
        value = getattr(settings, "RTCSTREAM", {})
        return value if isinstance(value, dict) else {}

    def worker_name(self) -> str:
        import socket

        return self.WORKER_NAME or f"{socket.gethostname()}:{os.getpid()}"


#: Every key and its default, in declaration order (the checks name them in their hints).
DEFAULTS: dict[str, Any] = {
    name: value.default for name, value in vars(RtcSettings).items() if isinstance(value, Setting)
}


@functools.cache
def _merged() -> dict[str, Any]:
    user = getattr(settings, "RTCSTREAM", {})
    if not isinstance(user, dict):
        user = {}
    return {**DEFAULTS, **user}


rtc_settings = RtcSettings()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "RTCSTREAM":
        _merged.cache_clear()  # the registry resets itself too (registry._reset)
