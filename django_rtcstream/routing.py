"""WebSocket routes, for the project's Channels ``URLRouter``::

    from django_rtcstream.routing import websocket_urlpatterns
    URLRouter([*websocket_urlpatterns])       # serves ws/rtc/<stream>/

or ``websocket_routes(prefix="video/")`` for another prefix (match the HTTP one).
"""

from __future__ import annotations

from typing import Any

from django.urls import path


class LazyConsumer:
    """An ASGI app that imports its consumer on its first connection.

    Building the routes then imports no media code (PyAV and numpy cost ~0.1 s of a
    worker's start); the first connection pays it, unless the warm-up did.
    """

    def __init__(self, dotted_path: str) -> None:
        self.dotted_path = dotted_path
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if self._app is None:
            from django.utils.module_loading import import_string

            self._app = import_string(self.dotted_path).as_asgi()
        return await self._app(scope, receive, send)


SIGNALING = "django_rtcstream.signaling.consumers.SignalingConsumer"
AUDIO_SOCKET = "django_rtcstream.telephone.audio_socket.AudioSocketConsumer"
TWILIO = "django_rtcstream.telephone.media_streams.TwilioMediaStreamConsumer"


def websocket_routes(prefix: str = "rtc/") -> list[Any]:
    """Browser-facing WebSocket routes (checked against ALLOWED_HOSTS origins)."""
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return [
        path(f"ws/{prefix}<slug:stream>/", LazyConsumer(SIGNALING), name="rtcstream-ws"),
        path(
            f"ws/{prefix}<slug:stream>/websocket/offer",
            LazyConsumer(AUDIO_SOCKET),
            name="rtcstream-audio-ws",
        ),
        path(f"{prefix}<slug:stream>/websocket/offer", LazyConsumer(AUDIO_SOCKET)),
    ]


def telephone_routes(prefix: str = "rtc/") -> list[Any]:
    """Twilio Media Streams routes: Twilio sends no Origin; its signature is checked instead."""
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return [
        path(
            f"{prefix}<slug:stream>/telephone/handler",
            LazyConsumer(TWILIO),
            name="rtcstream-telephone",
        ),
        path(f"ws/{prefix}<slug:stream>/telephone/handler", LazyConsumer(TWILIO)),
    ]


def __getattr__(name: str) -> Any:
    if name == "websocket_urlpatterns":
        return websocket_routes()
    raise AttributeError(name)
