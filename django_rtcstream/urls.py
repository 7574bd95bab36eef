"""HTTP routes. In the project's ``urls.py``::

    path("rtc/", include("django_rtcstream.urls")),

WebSocket routes are in ``django_rtcstream.routing`` (see ``django_rtcstream.asgi``).
"""

from __future__ import annotations

from django.urls import path

from django_rtcstream import pages
from django_rtcstream.api import hooks, openapi
from django_rtcstream.api.sessions import SessionViewSet
from django_rtcstream.signaling import http, metadata
from django_rtcstream.telephone import twilio

app_name = "rtcstream"

# Names these routes take; no stream may be registered under them (check E004).
RESERVED_NAMES = ("streams", "sessions", "openapi.json")

urlpatterns = [
    path("streams/", metadata.streams, name="streams"),
    path("openapi.json", openapi.schema_view, name="openapi"),
    path("sessions/", SessionViewSet.as_view({"get": "list"}), name="session-list"),
    path("sessions/<uuid:pk>/", SessionViewSet.as_view({"get": "retrieve"}),
         name="session-detail"),
    path("sessions/<uuid:pk>/close/", SessionViewSet.as_view({"post": "close"}),
         name="session-close"),
    path("<slug:stream>/config", metadata.config, name="config"),
    path("<slug:stream>/webrtc/offer", http.offer, name="offer"),
    path("<slug:stream>/input", hooks.input_hook, name="input"),
    path("<slug:stream>/outputs", hooks.outputs_hook, name="outputs"),
    path("<slug:stream>/telephone/incoming", twilio.incoming, name="telephone-incoming"),
    # The built-in pages (templates/django_rtcstream/): an index of the streams, one page each.
    path("", pages.index, name="index"),
    path("<slug:stream>/", pages.page, name="page"),
]
