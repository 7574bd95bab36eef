"""The test project's ASGI application, plus the app's static files.

The built-in page loads ``rtcstream.js`` and its stylesheet from STATIC_URL;
``tests.asgi`` (like a production deployment) does not serve static files, so
the browser tests wrap Django's HTTP side in ``ASGIStaticFilesHandler``, as
``runserver`` would.
"""

from __future__ import annotations

from typing import Any


def build_application(*, gradio_streams: list[str] | None = None) -> Any:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    from django_rtcstream.asgi import rtcstream_application

    application = rtcstream_application(
        ASGIStaticFilesHandler(get_asgi_application()), prefix="rtc/"
    )
    if gradio_streams is not None:
        from django_rtcstream.contrib.gradio.asgi import mount_gradio_ui

        application = mount_gradio_ui(application, streams=gradio_streams, prefix="rtc/")
    return application
