"""The control bus: reaching a session from any worker through the channel layer.

Two names per session, built only here:

- ``rtcstream.session.<id>``, a plain channel read by the worker that owns
  the peer connection. Channels buffer messages until they are read, so a
  candidate or input sent before the owner started listening is not lost.
- ``rtcstream.out.<id>``, a group every output subscriber (SSE hook,
  ``stream.output_stream``) joins; the owner sends each ``AdditionalOutputs``
  to it, then an end marker when the session closes (``sessions.outputs``).

The broker may go away (a Redis restart, a partition). Nothing here then fails a
session or hangs: a request that needs the broker (an input or a close for another
worker's session, joining an output group) gets ``BrokerUnavailable`` (503) within
``BROKER_TIMEOUT``; publishing an output or an end marker reports failure instead
of raising (the session keeps a few outputs and sends them later, see
``sessions.outbox``); receivers (a session's control loop, output
subscribers) retry with a bounded backoff, warn once per outage, and re-join their
group when the broker is back: a Redis that restarted without persistence has
forgotten every group. redis-py reconnects its pooled connections by itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import (
    BrokerUnavailable,
    SignalingError,
    UnknownSession,
)
from django_rtcstream.sessions import records, table

if TYPE_CHECKING:  # pragma: no cover
    from django_rtcstream.sessions.runtime import Session
    from django_rtcstream.stream import Stream

logger = logging.getLogger(__name__)

WEBRTC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LIVE_RECHECK_SECONDS = 5.0
INPUT_REPLY_SECONDS = 5.0  # how long an input update waits for the owning worker's answer
BROKER_TIMEOUT = 3.0  # the longest a request waits on one channel layer or cache call
RETRY_FIRST, RETRY_MAX = 0.2, 2.0  # receivers' backoff (seconds) while the broker is away


def broker_errors() -> tuple[type[BaseException], ...]:
    """What a channel layer or cache raises when its broker cannot be reached."""
    errors: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError, EOFError)
    try:
        from redis import exceptions as redis_errors
    except ImportError:  # another channel layer
        return errors
    return (*errors, redis_errors.ConnectionError, redis_errors.TimeoutError)


def is_broker_error(exc: BaseException) -> bool:
    return isinstance(exc, broker_errors())


async def _broker(what: str, awaitable: Any, timeout: float = BROKER_TIMEOUT) -> Any:
    """Await a channel layer call for a request: a broker that is away or too slow
    becomes ``BrokerUnavailable`` (503) after at most ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except Exception as exc:
        if isinstance(exc, asyncio.TimeoutError) or is_broker_error(exc):
            logger.info("Channel layer unavailable for %s: %r", what, exc)
            raise BrokerUnavailable(what) from exc
        raise


def retrieve_cleaner_errors(channel_layer: Any) -> None:
    """channels_redis removes each received message from its backup queue in a task of
    its own that nobody awaits: when the broker goes away just after a read, that task
    fails and asyncio logs "Task exception was never retrieved" with a traceback. Read
    such failures here (the message stays in the backup queue, which the next read of
    the channel puts back: at worst it is delivered twice)."""
    for task in getattr(channel_layer, "receive_cleaners", ()):
        if task not in _watched_cleaners:
            _watched_cleaners.add(task)
            task.add_done_callback(_retrieve)


_watched_cleaners: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("channels_redis backup cleanup failed: %r", task.exception())


def backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (bounded)."""
    return min(RETRY_MAX, RETRY_FIRST * 2.0 ** max(0, failures - 1))


def control_channel(webrtc_id: str) -> str:
    return f"rtcstream.session.{webrtc_id}"


def output_group(webrtc_id: str) -> str:
    return f"rtcstream.out.{webrtc_id}"


def latest_key(webrtc_id: str) -> str:
    return f"rtcstream:latest:{webrtc_id}"


def layer() -> BaseChannelLayer:
    channel_layer = get_channel_layer(rtc_settings.CHANNEL_LAYER_ALIAS)
    if channel_layer is None:
        raise RuntimeError(
            f"CHANNEL_LAYERS has no {rtc_settings.CHANNEL_LAYER_ALIAS!r} layer "
            "(see system check django_rtcstream.E007)"
        )
    return channel_layer


def check_webrtc_id(webrtc_id: Any) -> str:
    if not isinstance(webrtc_id, str) or not WEBRTC_ID_RE.match(webrtc_id):
        raise SignalingError(
            ErrorCode.INVALID_WEBRTC_ID,
            "webrtc_id must be 1-64 characters of letters, digits, '-' and '_'.",
        )
    return webrtc_id


def _local(webrtc_id: str) -> Session | None:
    """The session if this process owns it and we are on its loop."""
    session = table.get(webrtc_id)
    if session is None:
        return None
    try:
        return session if asyncio.get_running_loop() is session.loop else None
    except RuntimeError:
        return None


async def send_control(webrtc_id: str, message: dict[str, Any]) -> None:
    """Queue a message on the session's control channel (``BrokerUnavailable`` if the
    broker cannot take it)."""
    await _broker(
        f"reaching session {webrtc_id!r} on its worker",
        layer().send(control_channel(webrtc_id), {**message, "sent_at": time.time()}),
    )


async def send_inputs(stream: str, webrtc_id: str, values: list[Any]) -> None:
    """Deliver validated input values to the session, wherever it runs."""
    session = _local(webrtc_id)
    if session is not None and session.stream.name == stream:
        session.set_inputs(values)
        return
    await records.find_or_refuse(stream, webrtc_id, live=True)
    await send_control(webrtc_id, {"type": "rtc.input", "values": values})


def deliver_inputs(
    owner: Stream, stream: str, webrtc_id: str, values: list[Any]
) -> asyncio.Task[None] | None:
    """``Stream.set_input``: deliver values from sync or async code, wherever the session is.

    A session of this process (``owner`` is its ``Stream``) gets them at once, from
    its loop or from another thread; an unknown id raises ``UnknownSession`` at
    once. From sync code the call waits for the delivery. From inside a loop, with
    a channel layer shared by several processes, it returns the delivery task,
    whose failure, unawaited, is logged.
    """
    session = table.get(webrtc_id)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if session is not None and session.stream is owner and not session.closed.is_set():
        if loop is session.loop:
            session.set_inputs(values)
        else:  # another thread of the owning worker: hand them to the session's loop
            session.loop.call_soon_threadsafe(session.set_inputs, values)
        return None
    if loop is None:
        async_to_sync(send_inputs)(stream, webrtc_id, values)
        return None
    if isinstance(layer(), InMemoryChannelLayer):
        raise UnknownSession(webrtc_id)  # one process: no other worker can hold it
    task = loop.create_task(send_inputs(stream, webrtc_id, values))
    task.add_done_callback(_log_failed_delivery)
    return task


def _log_failed_delivery(task: asyncio.Task[None]) -> None:
    """An unawaited ``set_input`` task: its failure is logged once, never lost."""
    if not task.cancelled() and task.exception() is not None:
        logger.warning("set_input() was not delivered: %s", task.exception())


async def update_inputs(stream: str, webrtc_id: str, changes: dict[str, Any]) -> list[Any]:
    """Set some of a session's inputs by name, wherever it runs; the values after it.

    The owner merges ``changes`` (cleaned values) with the session's current values
    (``Session.update_inputs``): merging here, with values read from the record, let
    two concurrent updates of different inputs each undo the other. From another
    worker, the update travels over the session's control channel and the merged
    values come back on a reply channel.
    """
    session = _local(webrtc_id)
    if session is not None and session.stream.name == stream:
        return session.update_inputs(changes)
    await records.find_or_refuse(stream, webrtc_id, live=True)
    channel_layer = layer()
    reply = await channel_layer.new_channel()  # the default prefix (OutputSubscription.join)
    await send_control(webrtc_id, {"type": "rtc.input_update", "changes": changes, "reply": reply})
    try:
        message = await asyncio.wait_for(channel_layer.receive(reply), INPUT_REPLY_SECONDS)
    except Exception as exc:
        if not isinstance(exc, asyncio.TimeoutError):
            if is_broker_error(exc):
                raise BrokerUnavailable(f"confirming the inputs of session {webrtc_id!r}") from exc
            raise
        raise SignalingError(
            ErrorCode.SESSION_UNREACHABLE,
            f"The worker of session {webrtc_id!r} did not confirm the inputs within "
            f"{INPUT_REPLY_SECONDS:g} s; they apply when it reads them.",
        ) from None
    values: list[Any] = message["values"]  # Session.update_inputs' answer
    return values


async def send_close(stream: str, webrtc_id: str, reason: str) -> None:
    session = _local(webrtc_id)
    if session is not None and session.stream.name == stream:
        await session.close(reason)
        return
    await records.find_or_refuse(stream, webrtc_id, live=True)
    await send_control(webrtc_id, {"type": "rtc.close", "reason": reason})


# Candidates for sessions not yet known here wait for their offer; a flood of them
# for sessions that never come must stay cheap: this many may wait at once, per client
# address and in all, and each looks at the database only this often.
EARLY_PER_CLIENT = 8
EARLY_TOTAL = 256
EARLY_POLL = 0.25
_early_waiting: dict[str, int] = {}  # client address -> candidates waiting
_early_events: dict[str, asyncio.Event] = {}  # webrtc_id -> set when its session registers
_early_by_id: dict[str, int] = {}  # webrtc_id -> candidates waiting on its event


def session_registered(webrtc_id: str) -> None:
    """Called by this worker's session manager: wake the candidates waiting for it."""
    event = _early_events.pop(webrtc_id, None)
    if event is not None:
        event.set()


async def send_candidate(
    stream: str, webrtc_id: str, candidate: dict[str, Any] | None, client: str | None = None
) -> None:
    """Deliver a trickled ICE candidate, including one that arrives before its offer.

    The candidate is queued on the session's channel first, then we wait (up to
    ``EARLY_CANDIDATE_WAIT``) for the offer to be registered: the owner drains the
    channel once it starts, so no ordering of the two requests loses it. The wait
    wakes as soon as this worker registers the session; another worker's is seen
    in the database, looked at every ``EARLY_POLL`` seconds (never, with a one-process
    channel layer). At most ``EARLY_PER_CLIENT`` candidates of one client address and
    ``EARLY_TOTAL`` in all wait at once; more are refused at once with 429.
    """
    from channels.layers import InMemoryChannelLayer

    session = _local(webrtc_id)
    if session is not None and session.stream.name == stream:
        await session.add_candidate(candidate)
        return
    record = await records.find(stream, webrtc_id)
    if record is not None:
        if not record.is_live:
            raise SignalingError(ErrorCode.CONNECTION_CLOSED, f"Session {webrtc_id!r} has ended.")
        await send_control(webrtc_id, {"type": "rtc.ice", "candidate": candidate})
        return
    address = client or "-"
    if (
        _early_waiting.get(address, 0) >= EARLY_PER_CLIENT
        or sum(_early_waiting.values()) >= EARLY_TOTAL
    ):
        raise SignalingError(
            ErrorCode.TOO_MANY_EARLY_CANDIDATES,
            f"Too many candidates are waiting for sessions that have no offer yet; "
            f"send {webrtc_id!r}'s offer first.",
        )
    _early_waiting[address] = _early_waiting.get(address, 0) + 1
    try:
        await send_control(webrtc_id, {"type": "rtc.ice", "candidate": candidate})
        one_process = isinstance(layer(), InMemoryChannelLayer)
        event = _early_events.setdefault(webrtc_id, asyncio.Event())
        _early_by_id[webrtc_id] = _early_by_id.get(webrtc_id, 0) + 1
        deadline = time.monotonic() + rtc_settings.EARLY_CANDIDATE_WAIT
        while True:
            if _local(webrtc_id) is not None:
                return  # registered here: it reads the channel once admitted
            left = deadline - time.monotonic()
            if left <= 0:
                raise UnknownSession(webrtc_id)
            try:
                await asyncio.wait_for(event.wait(), left if one_process else min(left, EARLY_POLL))
                continue
            except TimeoutError:
                if one_process:
                    continue
            record = await records.find(stream, webrtc_id)
            if record is not None:
                if record.is_live:
                    return
                raise SignalingError(
                    ErrorCode.CONNECTION_CLOSED, f"Session {webrtc_id!r} has ended."
                )
    finally:
        _early_waiting[address] -= 1
        if not _early_waiting[address]:
            del _early_waiting[address]
        if webrtc_id in _early_by_id:
            _early_by_id[webrtc_id] -= 1
            if not _early_by_id[webrtc_id]:  # the last waiter for it: nothing is kept
                del _early_by_id[webrtc_id]
                _early_events.pop(webrtc_id, None)
