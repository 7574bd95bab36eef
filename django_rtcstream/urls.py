"""HTTP routes. In the project's ``urls.py``::

    path("rtc/", include("django_rtcstream.urls")),

WebSocket routes are in ``django_rtcstream.routing`` (see ``django_rtcstream.asgi``).
"""

from __future__ import annotations

from django.urls import path

from django_rtcstream.api import hooks
from django_rtcstream.signaling import http, metadata

app_name = "rtcstream"

urlpatterns = [
    path("streams/", metadata.streams, name="streams"),
    path("<slug:stream>/config", metadata.config, name="config"),
    path("<slug:stream>/webrtc/offer", http.offer, name="offer"),
    path("<slug:stream>/input", hooks.input_hook, name="input"),
    path("<slug:stream>/outputs", hooks.outputs_hook, name="outputs"),
]
