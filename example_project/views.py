"""The project's own route, next to the app's: an index of the registered streams.

This is FastRTC's "custom routes": the streams live under ``/rtc/`` and the
project adds whatever pages it wants around them.
"""

from django.shortcuts import render
from django.urls import reverse

from django_rtcstream.registry import get_streams


def index(request):
    streams = [
        {
            "name": name,
            "modality": stream.modality,
            "mode": stream.mode,
            "handler": getattr(stream.handler, "__name__", type(stream.handler).__name__),
            "inputs": [spec.name for spec in stream.inputs.specs],
            "page_url": reverse("rtcstream:page", kwargs={"stream": name}),
            "config_url": reverse("rtcstream:config", kwargs={"stream": name}),
            "offer_url": request.build_absolute_uri(
                reverse("rtcstream:offer", kwargs={"stream": name})
            ),
        }
        for name, stream in get_streams().items()
    ]
    rtc_base = request.build_absolute_uri(reverse("rtcstream:streams"))[: -len("streams/")]
    return render(request, "example_project/index.html", {"streams": streams, "rtc_base": rtc_base})
