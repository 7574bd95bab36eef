"""WebSocket routes, for the project's Channels ``URLRouter``::

    from django_rtcstream.routing import websocket_urlpatterns
    URLRouter([*websocket_urlpatterns])       # serves ws/rtc/<stream>/

or ``websocket_routes(prefix="video/")`` for another prefix (match the HTTP one).
"""

from __future__ import annotations

from typing import Any

from django.urls import path


def websocket_routes(prefix: str = "rtc/") -> list[Any]:
    """Browser-facing WebSocket routes (checked against ALLOWED_HOSTS origins)."""
    from django_rtcstream.signaling.consumers import SignalingConsumer
    from django_rtcstream.telephone.audio_socket import AudioSocketConsumer

    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return [
        path(f"ws/{prefix}<slug:stream>/", SignalingConsumer.as_asgi(), name="rtcstream-ws"),
        path(f"ws/{prefix}<slug:stream>/websocket/offer", AudioSocketConsumer.as_asgi(),
             name="rtcstream-audio-ws"),
        path(f"{prefix}<slug:stream>/websocket/offer", AudioSocketConsumer.as_asgi()),
    ]


def telephone_routes(prefix: str = "rtc/") -> list[Any]:
    """Twilio Media Streams routes: Twilio sends no Origin; its signature is checked instead."""
    from django_rtcstream.telephone.twilio import TwilioMediaStreamConsumer

    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    return [
        path(f"{prefix}<slug:stream>/telephone/handler", TwilioMediaStreamConsumer.as_asgi(),
             name="rtcstream-telephone"),
        path(f"ws/{prefix}<slug:stream>/telephone/handler", TwilioMediaStreamConsumer.as_asgi()),
    ]


def __getattr__(name: str) -> Any:
    if name == "websocket_urlpatterns":
        return websocket_routes()
    raise AttributeError(name)
