"""Fire-and-forget tasks whose failures are never lost.

A task nobody awaits that raises leaves only asyncio's "Task exception was
never retrieved" in the log, at garbage collection, without saying which
session it belonged to. Every task the app starts and does not await goes
through :func:`start`: its exception is retrieved when it finishes and logged
once, with the session id, and ``on_error`` (for a session's tasks: fail the
session) decides what else happens.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["start"]


def start(
    coro: Coroutine[Any, Any, Any],
    what: str,
    *,
    webrtc_id: str | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    context: contextvars.Context | None = None,
) -> asyncio.Task[Any]:
    """Run ``coro`` as a task; if it raises, log it once and call ``on_error``.

    ``what`` names the task in the log ("audio socket player"); cancelling it
    is not an error. ``context``: the task's context variables (default: a copy of
    the caller's, as ``create_task`` does).
    """
    loop = loop or asyncio.get_running_loop()
    name = f"rtcstream:{webrtc_id}:{what}" if webrtc_id else f"rtcstream:{what}"
    task = loop.create_task(coro, name=name, context=context)

    def done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if on_error is not None:
            on_error(exc)
        else:
            logger.warning("%s of session %s failed: %r", what, webrtc_id or "-", exc, exc_info=exc)

    task.add_done_callback(done)
    return task
