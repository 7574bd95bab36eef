"""Test a project's streams for real: a live ASGI server, connected clients, streams swapped in.

The app's own suite tests this way, and so can a project::

    from django_rtcstream.client import SyntheticVideoTrack
    from django_rtcstream.testing import live_server, override_streams, stream_client

    @pytest.mark.django_db(transaction=True)
    async def test_flip_turns_frames_over():
        with override_streams(flip="mysite.streams.flip"):
            async with live_server() as base_url:
                async with stream_client(base_url, "flip", video=SyntheticVideoTrack()) as client:
                    frame = await client.video_frames.get()

``live_server`` runs uvicorn (the ``test`` extra) in the test's own event loop,
so the test and the server share the process, the database and the session
runtime: a test can look at ``StreamSession`` rows and at the handler's state
directly. Media goes over real aiortc peer connections on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.test import override_settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:  # pragma: no cover
    from django_rtcstream.client import StreamClient
    from django_rtcstream.stream import Stream

__all__ = ["free_port", "live_server", "override_streams", "stream_client"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def live_server(
    application: Any = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    prefix: str = "rtc/",
    start_timeout: float = 15.0,
) -> AsyncIterator[str]:
    """Serve the project's ASGI application in this event loop; yields the base URL.

    Args:
        application: an ASGI application; default ``settings.ASGI_APPLICATION``.
        prefix: unused by the server; kept so ``f"{url}/{prefix}"`` reads well
            in tests (the app's URL prefix).
        start_timeout: seconds the server may take to start listening.

    The server stops (lifespan shutdown: every session of the process closes)
    when the block ends.
    """
    import uvicorn

    if application is None:
        application = import_string(settings.ASGI_APPLICATION)
    port = port or free_port(host)
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + start_timeout
    while not server.started:
        if task.done():
            task.result()  # it failed to start: raise why
            raise RuntimeError("the server stopped before it started")
        if loop.time() > deadline:
            task.cancel()
            raise TimeoutError(f"the server did not start within {start_timeout} s")
        await asyncio.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.contextmanager
def override_streams(
    *, keep: bool = False, **streams: str | Stream | Callable[[], Stream]
) -> Iterator[None]:
    """Serve these streams (name -> ``Stream`` or dotted path) for the block.

    ``keep=True`` keeps the project's other streams beside them.
    """
    current = dict(getattr(settings, "RTCSTREAM", {}) or {})
    names = {**(current.get("STREAMS", {}) if keep else {}), **streams}
    with override_settings(RTCSTREAM={**current, "STREAMS": names}):
        yield


@contextlib.asynccontextmanager
async def stream_client(
    base_url: str, stream: str, *, prefix: str = "rtc/", timeout: float = 15.0, **kwargs: Any
) -> AsyncIterator[StreamClient]:
    """A ``StreamClient`` connected to ``stream`` on a server at ``base_url``.

    ``kwargs`` go to :class:`~django_rtcstream.client.StreamClient` (``video=``,
    ``audio=``, ``signaling=``...); host candidates are gathered on 127.0.0.1
    unless ``ice_host_addresses`` says otherwise. The client hangs up when the
    block ends.
    """
    from django_rtcstream.client import StreamClient

    kwargs.setdefault("ice_host_addresses", ["127.0.0.1"])
    client = StreamClient(f"{base_url.rstrip('/')}/{prefix}", stream, **kwargs)
    await client.connect(timeout=timeout)
    try:
        yield client
    finally:
        await client.close()
