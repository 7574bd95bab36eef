"""Fixtures: a real ASGI server (uvicorn) in the test's event loop, and clients."""

from __future__ import annotations

import asyncio
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serve(application):
    """Run an ASGI application with uvicorn in this loop; returns (base_url, stop)."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()

    async def stop() -> None:
        server.should_exit = True
        await asyncio.wait_for(task, 15)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
async def asgi_server(transactional_db):
    """Serve tests.asgi on 127.0.0.1 (uvicorn, same loop); yields the base URL."""
    from tests.asgi import application

    url, stop = await serve(application)
    yield url
    await stop()


@pytest.fixture
def rtc_url(asgi_server):
    return f"{asgi_server}/rtc/"
