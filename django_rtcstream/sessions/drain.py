"""Draining this worker: finish its sessions, take no new ones, then stop.

A worker drains when its server gets SIGTERM (``django_rtcstream.asgi`` holds the
server's own handler back until the drain is over) or when ``manage.py
rtcstream_drain <worker>`` asks it to over the channel layer. Then:

- it admits no session: offers answer 503 ``draining`` with ``Retry-After``,
  WebSocket and phone starts are refused with the same code (close 4503), and
  ``health/ready`` answers 503 with ``"draining": true``, so load balancers move on;
- every live session gets a ``draining`` message (data channel, signaling and audio
  WebSockets): ``{"type": "draining", "data": {"reconnect": <the stream's
  reconnect_on_drain>, "seconds": <left before it is closed>}}``; the JS and Python
  clients then connect again (to whichever worker the URL reaches) when
  ``reconnect`` is true, and close the old session once the new one is up;
- sessions that end by themselves within ``DRAIN_TIMEOUT`` seconds end as they
  would; the rest are closed as ``server_shutdown`` (``shutdown()`` runs, records
  are closed) when it runs out.

Light on purpose, like ``shutdown``: the health view imports it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import sys
from typing import Any

from django_rtcstream.errors import ErrorCode

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often a drain looks for sessions that ended (or were just admitted)
LISTEN_BACKOFF = (0.5, 1.0, 2.0, 5.0)

_since: float | None = None  # loop time the drain began, while draining
_deadline: float | None = None  # loop time live sessions are closed
_task: asyncio.Future[None] | None = None
_listener: asyncio.Task[None] | None = None


def draining() -> bool:
    """Whether this worker drains (takes no new sessions)."""
    return _since is not None


def seconds_left() -> float | None:
    """Seconds before the sessions still live are closed (None when not draining)."""
    if _deadline is None:
        return None
    try:
        now = asyncio.get_running_loop().time()
    except RuntimeError:
        return None
    return max(0.0, _deadline - now)


def check_admitting(stream: Any) -> None:
    """Raise ``WorkerDraining`` (503) if this worker drains; called for every new session."""
    if _since is None:
        return
    from django_rtcstream import metrics
    from django_rtcstream.exceptions import WorkerDraining

    metrics.refused(getattr(stream, "name", None) or "", ErrorCode.DRAINING)
    raise WorkerDraining()


def begin(timeout: float | None = None) -> asyncio.Future[None]:
    """Start draining on the running loop (once); the future is done once every session
    of this worker has ended or been closed. ``timeout``: seconds (``DRAIN_TIMEOUT``)."""
    global _since, _deadline, _task
    if _since is not None and _task is not None:  # draining already (or drained)
        return _task
    from django_rtcstream.conf import rtc_settings

    if timeout is None:
        timeout = float(rtc_settings.DRAIN_TIMEOUT)
    loop = asyncio.get_running_loop()
    _since = loop.time()
    _deadline = _since + max(0.0, timeout)
    live = len(_live_sessions())
    logger.warning(
        "Worker %s drains: no new sessions; %d live session(s) get %.0f s to finish",
        rtc_settings.worker_name(),
        live,
        timeout,
    )
    _task = asyncio.ensure_future(_drain())
    return _task


def resume() -> bool:
    """Take sessions again (``rtcstream_drain --resume``): sessions still in their grace
    are no longer closed at its end. False if the worker was not draining."""
    global _since, _deadline, _task
    if _since is None:
        return False
    if _task is not None and not _task.done():
        _task.cancel()
    _since = _deadline = _task = None
    return True


def reset() -> None:
    """Serving again: a new server started in this process (lifespan startup)."""
    global _since, _deadline, _task
    _since = _deadline = _task = None


MANAGER_MODULES = ("django_rtcstream.sessions.manager", "django_rtcstream.sessions.runtime")


def manager_if_loaded() -> Any:
    """This worker's session manager if the runtime is loaded and made it (never loads
    it: this module stays light). Either module, before or after the runtime's split."""
    for name in MANAGER_MODULES:
        found = getattr(sys.modules.get(name), "_manager", None)
        if found is not None:
            return found
    return None


def _manager() -> Any:
    return manager_if_loaded()


def _live_sessions() -> list[Any]:
    manager = _manager()
    if manager is None:
        return []
    return [s for s in list(manager.sessions.values()) if not s.ended]


def message(session: Any) -> dict[str, Any]:
    """The ``draining`` message a session's client gets."""
    left = seconds_left()
    return {
        "type": "draining",
        "data": {
            "reconnect": bool(getattr(session.stream, "reconnect_on_drain", True)),
            "seconds": round(left, 1) if left is not None else 0,
        },
    }


async def _drain() -> None:
    assert _deadline is not None
    loop = asyncio.get_running_loop()
    told: set[Any] = set()
    while True:
        sessions = _live_sessions()
        if loop.time() >= _deadline or not sessions:
            break
        for session in sessions:
            # Admitted sessions only (an offer admitted as the drain began is told too).
            if session.admitted and session.record_id not in told:
                told.add(session.record_id)
                session.send_message(message(session))
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, _deadline - loop.time())))
    manager = _manager()
    if manager is not None and manager.sessions:
        logger.warning(
            "Drain over: closing %d session(s) still live as server_shutdown",
            len(manager.sessions),
        )
        await manager.close_all("server_shutdown")


# -- drain requests over the channel layer (manage.py rtcstream_drain) -------------------


def worker_channel(worker: str) -> str:
    """The channel a worker reads drain requests on (a valid channel name for any
    worker name: ``host:pid`` has a colon)."""
    safe = re.sub(r"[^a-zA-Z0-9\-_.]", "_", worker)[:60]
    digest = hashlib.sha1(worker.encode()).hexdigest()[:10]
    return f"rtcstream.worker.{safe}.{digest}"


def listen() -> None:
    """Read this worker's drain requests on the running loop (idempotent per loop)."""
    global _listener
    loop = asyncio.get_running_loop()
    if _listener is not None and not _listener.done() and _listener.get_loop() is loop:
        return
    _listener = loop.create_task(_listen(), name="rtcstream:drain-requests")


def stop_listening() -> asyncio.Task[None] | None:
    """Stop reading drain requests; the task, to await, if it was running."""
    global _listener
    task, _listener = _listener, None
    if task is None or task.done():
        return None
    try:
        task.cancel()
    except RuntimeError:  # its loop is closed
        return None
    return task


async def _listen() -> None:
    from django_rtcstream.conf import rtc_settings
    from django_rtcstream.sessions import bus

    worker = rtc_settings.worker_name()
    name = worker_channel(worker)
    failures = 0
    while True:
        try:
            layer = bus.layer()
            request = await layer.receive(name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if failures == 0:
                logger.info("Drain requests of %s: receive failed (%r); retrying", worker, exc)
            await asyncio.sleep(LISTEN_BACKOFF[min(failures, len(LISTEN_BACKOFF) - 1)])
            failures += 1
            continue
        failures = 0
        try:
            await _answer(layer, worker, request)
        except Exception:
            logger.warning("Bad drain request for %s: %r", worker, request, exc_info=True)


async def _answer(layer: Any, worker: str, request: dict[str, Any]) -> None:
    kind = request.get("type")
    if kind == "rtc.drain":
        timeout = request.get("timeout")
        begin(float(timeout) if timeout is not None else None)
        reply = {"type": "rtc.draining", "worker": worker, "sessions": len(_live_sessions())}
        reply["seconds"] = seconds_left()
    elif kind == "rtc.resume":
        reply = {"type": "rtc.resumed", "worker": worker, "resumed": resume()}
    else:
        return
    if request.get("reply"):
        await layer.send(request["reply"], reply)
