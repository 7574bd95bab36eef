"""The one helper a project's ``asgi.py`` needs::

    import os
    from django.core.asgi import get_asgi_application
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    django_app = get_asgi_application()

    from django_rtcstream.asgi import rtcstream_application
    application = rtcstream_application(django_app, prefix="rtc/")

It returns a Channels ``ProtocolTypeRouter``: HTTP goes to Django (offers are
answered before it, see ``signaling.direct``), WebSockets
to the app's consumers (plus any ``websocket_urlpatterns`` of your own), behind
Channels' session/auth middleware and an origin check against ``ALLOWED_HOSTS``
(for clients that send an ``Origin``: browsers).

On SIGTERM the worker first drains (see ``sessions.drain``): it takes no new
sessions and gives its live ones ``DRAIN_TIMEOUT`` seconds, holding the server's
own SIGTERM handler back until then (a second SIGTERM, or SIGINT, stops at once).
When the server starts stopping, every open SSE output stream ends (``event:
end``) and every session of the worker closes as ``server_shutdown``, so
``shutdown()`` runs for each. uvicorn says so only with ``lifespan.shutdown``,
after it has waited for every open connection, and SSE streams and sessions'
WebSockets stay open until their sessions close: the lifespan startup
therefore chains this onto the server's own SIGTERM / SIGINT handlers (and
lifespan shutdown finishes it). Daphne has no lifespan: its reactor's
shutdown does it.

The media stack (aiortc, PyAV: ~0.2 s of imports), the DRF views and the
session records' database connection are made ready in the background once the worker has
answered its first HTTP request, so the worker starts fast and its first offer
does not pay for them (bench/README.md, "Figures the code cites").
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

from django_rtcstream.routing import telephone_routes, websocket_routes
from django_rtcstream.sessions import drain, shutdown
from django_rtcstream.signaling.direct import DirectOffers


class _TelephoneOrBrowser:
    """Twilio's Media Streams skip the origin check (Twilio sends no Origin; its
    signature is checked instead); every other WebSocket goes through it."""

    def __init__(self, telephone: Any, browser: Any) -> None:
        self.telephone, self.browser = telephone, browser

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        app = (
            self.telephone
            if scope["path"].rstrip("/").endswith("/telephone/handler")
            else self.browser
        )
        return await app(scope, receive, send)


class _OriginCheck:
    """Refuse a WebSocket whose ``Origin`` is not one of ``ALLOWED_HOSTS``.

    Only browsers send ``Origin``, and a browser always does: a connection
    without one (the ``websockets`` library, a phone bridge, another server)
    cannot be a cross-site request, so it is let through and authorised like
    any other (token, user). Channels' own validator refuses it instead.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.checked = AllowedHostsOriginValidator(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        has_origin = any(name == b"origin" for name, _ in scope.get("headers", ()))
        return await (self.checked if has_origin else self.app)(scope, receive, send)


logger = logging.getLogger(__name__)


def warm_up() -> None:
    """Import the media stack and open the records connection (runs in a thread)."""
    from django.db import connection

    from django_rtcstream.api import hooks, sessions  # noqa: F401  (DRF: lazy in the URLconf)

    # The seam into aiortc is checked where it is used, by the session manager
    # (which honours the settings that turn the buffers off).
    from django_rtcstream.sessions import manager, records  # noqa: F401  (imports aiortc, av)
    from django_rtcstream.signaling import consumers  # noqa: F401
    from django_rtcstream.telephone import audio_socket, media_streams  # noqa: F401

    try:
        records._executor.submit(records._run, connection.ensure_connection).result()
    except Exception:  # the database may not be up yet: the first admission connects
        logger.debug("django-rtcstream warm-up: no database connection yet", exc_info=True)
    from django_rtcstream.conf import rtc_settings

    if rtc_settings.GC_FREEZE:
        # The collector's full pass traverses every tracked object while holding the GIL:
        # with Django, DRF, aiortc and PyAV imported it took long enough (bench/README.md)
        # that every session's audio stalled meanwhile (gaps the fuzz tests' echo measured).
        # What exists now is the import-time heap, alive for the worker's whole life:
        # frozen, the full passes see only what sessions allocate.
        gc.freeze()


class _WarmAfterFirstRequest:
    """HTTP: pass through; after the first request, ``warm_up()`` in a thread, once, then
    start the worker's heartbeat.

    The heartbeat also reaps the sessions of workers that died: a worker that had no
    session of its own started it only with its first offer, so with the others gone
    nobody reaped their sessions, and SSE subscribers on it never heard the end.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.warming: asyncio.Future[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        try:
            return await self.app(scope, receive, send)
        finally:
            if self.warming is None:
                self.warming = asyncio.get_running_loop().run_in_executor(None, warm_up)
                self.warming.add_done_callback(_warmed)


def _warmed(future: asyncio.Future[None]) -> None:
    """On the loop, once warm-up is done: start the heartbeat (or log why not)."""
    if future.cancelled():
        return
    if future.exception() is not None:
        logger.warning(
            "django-rtcstream warm-up failed; the first offer will do it",
            exc_info=future.exception(),
        )
        return
    from django_rtcstream.sessions import manager

    try:
        manager.manager().start_heartbeat()
    except Exception:
        logger.warning(
            "django-rtcstream: the heartbeat did not start; the first offer starts it",
            exc_info=True,
        )


class _Lifespan:
    """ASGI lifespan: shut this worker down when the server is told to stop (see
    ``_chain_server_signals``) and, at the latest, at lifespan shutdown."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                global _closing, _sigterms
                _closing = None
                _sigterms = 0
                shutdown.reset()
                drain.reset()
                _chain_server_signals()
                worker_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await begin_shutdown()
                await worker_stopped()
                await send({"type": "lifespan.shutdown.complete"})
                return


_closing: asyncio.Future[None] | None = None
_sigterms = 0


def worker_started() -> None:
    """On the worker's loop, once it serves (lifespan startup; daphne: once its reactor
    runs): the metrics sampler and the listener for drain requests
    (``rtcstream_drain``). Idempotent."""
    from django_rtcstream import metrics

    try:
        metrics.start()
        drain.listen()
    except Exception:
        logger.warning("django-rtcstream: metrics or drain requests did not start", exc_info=True)


async def worker_stopped() -> None:
    """Lifespan shutdown: stop what ``worker_started`` started, and wait until it has."""
    from django_rtcstream import metrics

    tasks = [task for task in (metrics.stop(), drain.stop_listening()) if task is not None]
    await asyncio.gather(*tasks, return_exceptions=True)
    # Its live gauges leave the sums now: uvicorn ends the process by raising the signal
    # again, so exit handlers do not run.
    metrics.process_exiting()


def _on_sigterm(previous: Any, number: int) -> None:
    """On the loop: drain, then let the server's own SIGTERM handler stop it; at once on
    a second SIGTERM or when ``DRAIN_TIMEOUT`` is 0."""
    global _sigterms
    from django_rtcstream.conf import rtc_settings

    _sigterms += 1

    def stop(_: Any = None) -> None:
        begin_shutdown()
        previous(number, None)

    if _sigterms > 1 or float(rtc_settings.DRAIN_TIMEOUT) <= 0:
        stop()
        return
    drain.begin().add_done_callback(stop)


def begin_shutdown() -> asyncio.Future[None]:
    """Shut this worker down, once: open SSE streams end at once and every session
    closes as ``server_shutdown``. Returns a future of both, to await."""
    global _closing
    shutdown.begin()
    if _closing is None:
        _closing = asyncio.ensure_future(_shut_down())
    return _closing


async def _shut_down() -> None:
    await asyncio.gather(close_worker_sessions(), shutdown.streams_ended())
    await worker_stopped()


async def close_worker_sessions(reason: str = "server_shutdown") -> None:
    from django_rtcstream.sessions import manager

    if manager._manager is not None:
        await manager._manager.close_all(reason)


def _chain_server_signals() -> None:
    """Drain on SIGTERM, then let the server's own handler run; on SIGINT (a person at
    a terminal) begin shutting down and let it run at once.

    Holding the SIGTERM handler back is what lets the drain answer: uvicorn closes its
    listening socket as soon as its handler runs (new offers would be refused
    connections, not 503s), and daphne's reactor cancels every connection.

    uvicorn sends ``lifespan.shutdown`` only after every connection has closed, and
    it has no earlier hook; open SSE streams and sessions' WebSockets end only once
    their sessions close, so waiting for lifespan shutdown kept the worker up until
    it was killed. The server's handler is kept and called (a second Ctrl-C still
    forces uvicorn out); uvicorn puts back the handlers it found when it stops.
    Only where a server installed a handler, from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or getattr(previous, "rtcstream_chained", False):
            continue  # the default ends the process anyway; or already chained

        def handler(number: int, frame: Any, previous: Any = previous) -> None:
            if number == signal.SIGTERM:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(_on_sigterm, previous, number)
                    return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(begin_shutdown)
            previous(number, frame)

        handler.rtcstream_chained = True  # type: ignore[attr-defined]
        signal.signal(signum, handler)


def _daphne_shutdown_hook() -> None:
    """Daphne has no lifespan: shut down when its Twisted reactor stops.

    The trigger runs before daphne's own, which cancels every application; the SSE
    streams have then been told to end and finish their responses.
    """
    import sys

    if "daphne.server" not in sys.modules or "twisted.internet.reactor" not in sys.modules:
        return

    from twisted.internet import defer, reactor

    def before_shutdown() -> Any:
        return defer.Deferred.fromFuture(begin_shutdown())

    def started() -> None:  # on the running loop, after Twisted set its signal handlers
        shutdown.reset()
        drain.reset()
        _chain_server_signals()
        worker_started()

    # Twisted's interfaces declare methods without self; without the zope plugin mypy
    # reads their first parameter as self and every argument one place off.
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[arg-type]
    reactor.callWhenRunning(reactor.callLater, 0, started)


def rtcstream_application(
    django_app: Any,
    *,
    prefix: str = "rtc/",
    websocket_urlpatterns: list[Any] | None = None,
    check_origin: bool = True,
) -> ProtocolTypeRouter:
    """Build the project's ASGI application with django-rtcstream's WebSocket routes."""
    browser: Any = AuthMiddlewareStack(
        URLRouter([*websocket_routes(prefix), *(websocket_urlpatterns or [])])
    )
    if check_origin:
        browser = _OriginCheck(browser)
    websocket = _TelephoneOrBrowser(URLRouter(telephone_routes(prefix)), browser)
    _daphne_shutdown_hook()
    return ProtocolTypeRouter(
        {
            "http": _WarmAfterFirstRequest(DirectOffers(django_app)),
            "websocket": websocket,
            "lifespan": _Lifespan(),
        }
    )
