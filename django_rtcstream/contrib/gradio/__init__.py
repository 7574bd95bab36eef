"""The optional Gradio UI of a stream (the ``gradio`` extra).

``stream.ui`` builds it (:func:`django_rtcstream.contrib.gradio.ui.build_ui`);
:func:`django_rtcstream.contrib.gradio.asgi.mount_gradio_ui` serves it inside the
project's ASGI application. Media never goes through Gradio: the page runs the
app's own browser client (``rtcstream.js``) over the app's WebRTC signaling, and
Gradio carries only the inputs' widgets and the outputs' components.

Importing this package does not import gradio; its modules do.
"""

from __future__ import annotations

from typing import Any


def build_ui(stream: Any, **kwargs: Any) -> Any:
    from django_rtcstream.contrib.gradio.ui import build_ui as _build_ui

    return _build_ui(stream, **kwargs)


def mount_gradio_ui(application: Any, **kwargs: Any) -> Any:
    from django_rtcstream.contrib.gradio.asgi import mount_gradio_ui as _mount

    return _mount(application, **kwargs)


__all__ = ["build_ui", "mount_gradio_ui"]
