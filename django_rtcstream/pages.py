"""The built-in pages: an index of the registered streams and one page per stream.

Both are plain Django templates using only the app's static files (the
``rtcstream.js`` client, the page script and its stylesheet), so a project gets
a working UI for every stream without writing any HTML. The page's form is
rendered on the server from the stream's input declarations; the page script
only reads it, which keeps the two from drifting apart.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from django_rtcstream import registry
from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import StreamNotFound
from django_rtcstream.signaling.metadata import describe
from django_rtcstream.stream import Stream

MODALITY_WORDS = {"video": "Video", "audio": "Audio", "audio-video": "Audio and video"}
MODE_WORDS = {
    "send-receive": "you send, the server answers",
    "send": "you send",
    "receive": "the server sends",
}


def _namespace(request: HttpRequest) -> str:
    return request.resolver_match.namespace if request.resolver_match else "rtcstream"


def _summary(request: HttpRequest, stream: Stream) -> dict[str, Any]:
    ns = _namespace(request)
    data = describe(request, stream)
    data["page_url"] = reverse(f"{ns}:page", kwargs={"stream": stream.name})
    data["modality_words"] = MODALITY_WORDS.get(stream.modality, stream.modality)
    data["mode_words"] = MODE_WORDS.get(stream.mode, stream.mode)
    data["has_video"] = "video" in stream.kinds
    data["has_audio"] = "audio" in stream.kinds
    data["sends"] = stream.receives_media_from_client  # the browser sends media
    data["receives"] = stream.sends_media_to_client  # the browser receives media
    for spec in data["inputs"]:
        spec["label"] = spec.get("label") or spec["name"].replace("_", " ").capitalize()
        if spec["kind"] == "dropdown":
            spec["options"] = [
                {
                    "value": c,
                    "selected": (c in spec["default"])
                    if spec.get("multiselect")
                    else c == spec["default"],
                }
                for c in spec["choices"]
            ]
    data["output_labels"] = [o.get("label") for o in data["outputs"]]
    return data


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Every registered stream with a link to its page."""
    streams = [_summary(request, s) for s in registry.get_streams().values()]
    return render(
        request,
        "django_rtcstream/index.html",
        {"streams": streams, "index_url": reverse(f"{_namespace(request)}:index")},
    )


@require_GET
@ensure_csrf_cookie  # a signed-in user's input-hook POSTs need the CSRF cookie
def page(request: HttpRequest, stream: str) -> HttpResponse:
    """A page that streams to and from one stream, with its inputs and outputs."""
    try:
        the_stream = registry.get_stream(stream)
    except StreamNotFound:
        streams = [_summary(request, s) for s in registry.get_streams().values()]
        return render(
            request,
            "django_rtcstream/index.html",
            {
                "streams": streams,
                "missing": stream,
                "index_url": reverse(f"{_namespace(request)}:index"),
            },
            status=404,
        )
    summary = _summary(request, the_stream)
    client_config = {
        "name": the_stream.name,
        "url": summary["urls"]["config"],
        "modality": the_stream.modality,
        "mode": the_stream.mode,
        "outputLabels": summary["output_labels"],
        # Live charts of the server's stats (data channel "stats" messages; sessions/stats.py)
        "serverStats": bool(rtc_settings.STATS_INTERVAL),
    }
    return render(
        request,
        "django_rtcstream/stream_page.html",
        {
            "stream": summary,
            "client_config": client_config,
            "stats_charts": [("rtt", "RTT"), ("bitrate", "Bitrate"), ("loss", "Loss")],
            "index_url": reverse(f"{_namespace(request)}:index"),
        },
    )
