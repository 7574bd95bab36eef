"""HTTP routes. In the project's ``urls.py``::

    path("rtc/", include("django_rtcstream.urls")),

WebSocket routes are in ``django_rtcstream.routing`` (see ``django_rtcstream.asgi``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import path
from django.utils.module_loading import import_string

from django_rtcstream import pages
from django_rtcstream.api import health, metrics, openapi
from django_rtcstream.signaling import http, metadata
from django_rtcstream.telephone import twilio


def lazy_view(
    dotted_path: str,
    *,
    is_async: bool = False,
    csrf_exempt: bool = False,
    actions: dict[str, str] | None = None,
) -> Callable[..., Any]:
    """A view imported on its first request.

    The DRF views (input hook, outputs, sessions API) pull in DRF's serializers and,
    through them, psycopg: ~0.1 s of a worker's start that the first ``config`` or
    offer request would otherwise wait for. Django must know before the import
    whether the view is async and CSRF-exempt, so they are declared here (a test
    checks them against the real views).
    """
    loaded: list[Callable[..., Any]] = []

    def load() -> Callable[..., Any]:
        if not loaded:
            target = import_string(dotted_path)
            loaded.append(target.as_view(actions) if actions is not None else target)
        return loaded[0]

    async def async_view(request: Any, *args: Any, **kwargs: Any) -> Any:
        return await load()(request, *args, **kwargs)

    def sync_view(request: Any, *args: Any, **kwargs: Any) -> Any:
        return load()(request, *args, **kwargs)

    view: Callable[..., Any] = async_view if is_async else sync_view

    view.csrf_exempt = csrf_exempt  # type: ignore[attr-defined]
    view.lazy_target = (dotted_path, actions)  # type: ignore[attr-defined]
    return view


SESSIONS = "django_rtcstream.api.sessions.SessionViewSet"

app_name = "rtcstream"

# The routes of one stream take any single path segment as its name (``str``, not
# ``slug``): a name that no stream has gets the app's JSON failure (404
# ``unknown_stream``), not the project's HTML 404 page. The same goes for session ids.
urlpatterns = [
    path("streams/", metadata.streams, name="streams"),
    path("openapi.json", openapi.schema_view, name="openapi"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.view, name="metrics"),
    path(
        "sessions/",
        lazy_view(SESSIONS, csrf_exempt=True, actions={"get": "list"}),
        name="session-list",
    ),
    path(
        "sessions/<str:pk>/",
        lazy_view(SESSIONS, csrf_exempt=True, actions={"get": "retrieve"}),
        name="session-detail",
    ),
    path(
        "sessions/<str:pk>/close/",
        lazy_view(SESSIONS, csrf_exempt=True, actions={"post": "close"}),
        name="session-close",
    ),
    path("<str:stream>/config", metadata.config, name="config"),
    path("<str:stream>/webrtc/offer", http.offer, name="offer"),
    path(
        "<str:stream>/input",
        lazy_view("django_rtcstream.api.hooks.input_hook", csrf_exempt=True),
        name="input",
    ),
    path(
        "<str:stream>/outputs",
        lazy_view("django_rtcstream.api.hooks.outputs_hook", is_async=True),
        name="outputs",
    ),
    path(
        "<str:stream>/outputs/ticket",
        lazy_view("django_rtcstream.api.hooks.outputs_ticket", is_async=True, csrf_exempt=True),
        name="outputs-ticket",
    ),
    path("<str:stream>/telephone/incoming", twilio.incoming, name="telephone-incoming"),
    # The built-in pages (templates/django_rtcstream/): an index of the streams, one page each.
    path("", pages.index, name="index"),
    path("<slug:stream>/", pages.page, name="page"),
]
