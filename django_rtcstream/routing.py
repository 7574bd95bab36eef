"""WebSocket routes, for the project's Channels ``URLRouter``::

    from django_rtcstream.routing import websocket_urlpatterns
    URLRouter([*websocket_urlpatterns])       # serves ws/rtc/<stream>/

or ``websocket_routes(prefix="video/")`` for another prefix (match the HTTP one).
"""

from __future__ import annotations

from typing import Any

from django.urls import path


def websocket_routes(prefix: str = "rtc/") -> list[Any]:
    from django_rtcstream.signaling.consumers import SignalingConsumer

    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return [
        path(f"ws/{prefix}<slug:stream>/", SignalingConsumer.as_asgi(), name="rtcstream-ws"),
    ]


def __getattr__(name: str) -> Any:
    if name == "websocket_urlpatterns":
        return websocket_routes()
    raise AttributeError(name)
