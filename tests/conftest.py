"""Fixtures: a real ASGI server (uvicorn) in the test's event loop, and clients."""

from __future__ import annotations

import contextlib

import pytest

from django_rtcstream.testing import free_port, live_server  # noqa: F401  (tests import free_port)


async def serve(application):
    """Run an ASGI application with uvicorn in this loop; returns (base_url, stop)."""
    stack = contextlib.AsyncExitStack()
    url = await stack.enter_async_context(live_server(application))
    return url, stack.aclose


@pytest.fixture
async def asgi_server(transactional_db):
    """Serve tests.asgi on 127.0.0.1 (uvicorn, same loop); yields the base URL."""
    from tests.asgi import application

    async with live_server(application) as url:
        yield url


@pytest.fixture
def rtc_url(asgi_server):
    return f"{asgi_server}/rtc/"
