"""Serve streams' Gradio UIs inside the project's ASGI application.

In the project's ``asgi.py``, after building the application as usual::

    from django_rtcstream.asgi import rtcstream_application
    from django_rtcstream.contrib.gradio.asgi import mount_gradio_ui

    application = rtcstream_application(django_app, prefix="rtc/")
    application = mount_gradio_ui(application, prefix="rtc/")   # /rtc/<stream>/ui/

Requests (HTTP and WebSocket) under ``/<prefix><stream>/ui`` go to Gradio,
everything else to the wrapped application unchanged. The UIs stream through
the app's own signaling, so they need nothing else; the page loads
``rtcstream.js`` from ``STATIC_URL``, which the project must serve (as for the
built-in page: ``runserver``, WhiteNoise, or the web server in front).

Both applications get the ASGI lifespan: Gradio starts its queue there, and
the wrapped application closes this worker's sessions on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

Scope = dict[str, Any]


class PathDispatcher:
    """Send a request to Gradio when ``to_gradio(path)``, else to ``default``;
    fan the lifespan out to both."""

    def __init__(self, default: Any, gradio_app: Any, to_gradio: Any) -> None:
        self.default = default
        self.gradio_app = gradio_app
        self.to_gradio = to_gradio

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_fanout([self.gradio_app, self.default], scope, receive, send)
        elif self.to_gradio(scope.get("path", "")):
            await self.gradio_app(scope, receive, send)
        else:
            await self.default(scope, receive, send)


async def lifespan_fanout(apps: list[Any], scope: Scope, receive: Any, send: Any) -> None:
    """Run the ASGI lifespan of several applications as one.

    An application that raises on a lifespan scope (plain Django does) does not
    support it and is left out, as servers do. A failed startup of any of them
    fails the whole startup with its message.
    """
    running: list[tuple[asyncio.Queue[Any], asyncio.Queue[Any], asyncio.Task[Any]]] = []
    for app in apps:
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.ensure_future(app(dict(scope), inbox.get, outbox.put))
        running.append((inbox, outbox, task))

    async def step(message: dict[str, Any]) -> list[dict[str, Any]]:
        replies = []
        for inbox, outbox, task in running:
            if task.done():
                continue
            await inbox.put(message)
            reply = asyncio.ensure_future(outbox.get())
            await asyncio.wait({reply, task}, return_when=asyncio.FIRST_COMPLETED)
            if reply.done():
                replies.append(reply.result())
            else:
                reply.cancel()  # the app ended (or raised): it takes no lifespan
        return replies

    try:
        message = await receive()  # lifespan.startup
        replies = await step(message)
        failed = [r for r in replies if r["type"] == "lifespan.startup.failed"]
        if failed:
            await send(
                {
                    "type": "lifespan.startup.failed",
                    "message": "; ".join(r.get("message", "") for r in failed),
                }
            )
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()  # lifespan.shutdown
        await step(message)
        await send({"type": "lifespan.shutdown.complete"})
    finally:
        for _, _, task in running:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"/{prefix}/" if prefix else "/"


def mount_gradio_ui(
    application: Any,
    streams: list[str] | None = None,
    *,
    prefix: str = "rtc/",
    namespace: str = "rtcstream",
    **gradio_kwargs: Any,
) -> PathDispatcher:
    """Wrap the project's ASGI application so ``/<prefix><stream>/ui/`` serves ``stream.ui``.

    Args:
        application: the project's ASGI application (usually
            ``rtcstream_application(...)``).
        streams: names of the streams to mount; default every registered one.
        prefix: the app's URL prefix, as in ``urls.py`` and ``rtcstream_application``.
        gradio_kwargs: passed to ``gradio.mount_gradio_app`` (``theme``,
            ``auth``, ``footer_links``...).
    """
    import gradio as gr
    from fastapi import FastAPI

    from django_rtcstream import registry

    names = list(streams) if streams is not None else registry.stream_names()
    base = _prefix(prefix)
    gradio_parent = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    mounts = []
    for name in names:
        stream = registry.get_stream(name)
        if getattr(stream, "_ui", None) is None:
            from django_rtcstream.contrib.gradio.ui import build_ui

            stream.ui = build_ui(stream, namespace=namespace)
        path = f"{base}{name}/ui"
        gr.mount_gradio_app(gradio_parent, stream.ui, path=path, **gradio_kwargs)
        mounts.append(path)

    def to_gradio(path: str) -> bool:
        return any(path == m or path.startswith(m + "/") for m in mounts)

    return PathDispatcher(application, gradio_parent, to_gradio)


def standalone_application(blocks: Any, **gradio_kwargs: Any) -> PathDispatcher:
    """Gradio at ``/``, Django beside it: what ``StreamBlocks.launch()`` serves.

    Django gets the app's prefix (found from the stream's config URL), its
    WebSocket twin under ``/ws/`` and ``STATIC_URL`` (served from the app
    directories, as ``runserver`` does); Gradio gets every other path.
    """
    import gradio as gr
    from django.conf import settings
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application
    from django.urls import reverse
    from fastapi import FastAPI

    from django_rtcstream.asgi import rtcstream_application

    stream = blocks.rtc_stream
    config = reverse("rtcstream:config", kwargs={"stream": stream.name})
    prefix = config[: -len(f"{stream.name}/config")]  # "/rtc/"
    django_app = rtcstream_application(
        ASGIStaticFilesHandler(get_asgi_application()), prefix=prefix
    )
    gradio_parent = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    gr.mount_gradio_app(gradio_parent, blocks, path="/", **gradio_kwargs)
    django_paths = (prefix, f"/ws{prefix}", settings.STATIC_URL or "/static/")

    def to_gradio(path: str) -> bool:
        return not any(path.startswith(p) for p in django_paths)

    return PathDispatcher(django_app, gradio_parent, to_gradio)
