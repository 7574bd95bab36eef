"""The control bus: reaching a session from any worker through the channel layer.

Two names per session, built only here:

- ``rtcstream.session.<id>``, a plain channel read by the worker that owns
  the peer connection. Channels buffer messages until they are read, so a
  candidate or input sent before the owner started listening is not lost.
- ``rtcstream.out.<id>``, a group every output subscriber (SSE hook,
  ``stream.output_stream``) joins; the owner sends each ``AdditionalOutputs``
  to it, then an end marker when the session closes.

Outputs travel pickled (the channel layer is trusted infrastructure, like
Django's cache) so ``output_stream`` yields the handler's own objects on
every worker.

The broker may go away (a Redis restart, a partition). Nothing here then fails a
session or hangs: a request that needs the broker (an input or a close for another
worker's session, joining an output group) gets ``BrokerUnavailable`` (503) within
``BROKER_TIMEOUT``; publishing an output or an end marker reports failure instead
of raising (the session keeps a few outputs and sends them later, see
``Session._publish_outputs``); receivers (a session's control loop, output
subscribers) retry with a bounded backoff, warn once per outage, and re-join their
group when the broker is back: a Redis that restarted without persistence has
forgotten every group. redis-py reconnects its pooled connections by itself.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import re
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.cache import cache

from django_rtcstream.conf import rtc_settings
from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import (
    BrokerUnavailable,
    DatabaseUnavailable,
    SignalingError,
    UnknownSession,
)
from django_rtcstream.handlers import AdditionalOutputs
from django_rtcstream.sessions import records

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
    return min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, failures - 1))


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


def _local(webrtc_id: str) -> Any:
    """The session if this process owns it and we are on its loop."""
    from django_rtcstream.sessions.runtime import local_session

    session = local_session(webrtc_id)
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
    reply = await channel_layer.new_channel("rtcstream.reply.")
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
    return message["values"]


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
            except asyncio.TimeoutError:
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


def _dumps(output: AdditionalOutputs) -> bytes:
    return pickle.dumps(output.args, protocol=pickle.HIGHEST_PROTOCOL)


async def publish_output(webrtc_id: str, output: AdditionalOutputs) -> bool:
    """Called by the owner: fan an output out to every subscriber, keep it as the latest.

    Never raises for the broker: returns False when the output could not be handed to
    the channel layer within ``BROKER_TIMEOUT`` (the session keeps it for later, see
    ``Session._publish_outputs``). The latest-output cache is best effort.
    """
    try:
        payload = _dumps(output)
    except Exception:  # an unpicklable result still reaches subscribers as text
        payload = _dumps(AdditionalOutputs(*[repr(a) for a in output.args]))
    try:  # first, so that a subscriber that got it finds it as the latest too
        await asyncio.wait_for(
            cache.aset(latest_key(webrtc_id), payload, timeout=3600), BROKER_TIMEOUT
        )
    except Exception as exc:
        logger.debug("Latest output of %s not cached: %r", webrtc_id, exc)
    try:
        await asyncio.wait_for(
            layer().group_send(output_group(webrtc_id), {"type": "rtc.output", "args": payload}),
            BROKER_TIMEOUT,
        )
    except Exception as exc:
        logger.debug("Output of %s not published: %r", webrtc_id, exc)
        return False
    return True


async def publish_end(webrtc_id: str) -> bool:
    """Tell the session's subscribers it ended; False if the broker could not take it
    (they then see it in the record, within ``LIVE_RECHECK_SECONDS``). Never raises."""
    try:
        await asyncio.wait_for(
            layer().group_send(output_group(webrtc_id), {"type": "rtc.output_end"}), BROKER_TIMEOUT
        )
    except Exception as exc:
        logger.warning(
            "End of session %s not published (%r): its subscribers see it in "
            "the record within %g s",
            webrtc_id,
            exc,
            LIVE_RECHECK_SECONDS,
        )
        return False
    return True


class OutputSubscription:
    """One subscriber of a session's output group, from any worker.

    ``await join()`` first (``UnknownSession``; ``BrokerUnavailable`` when the broker
    cannot be reached; False when the session has already ended), then iterate to
    get the outputs until the session ends. While the broker is away the iteration
    waits and retries (warning once); once it is back the subscription joins the
    group again, since a restarted broker may have forgotten it. It also re-joins
    after every ``LIVE_RECHECK_SECONDS`` without a message, which covers a restart
    that happened between two reads.
    """

    def __init__(self, stream: str, webrtc_id: str) -> None:
        self.stream = stream
        self.webrtc_id = webrtc_id
        self.group = output_group(webrtc_id)
        self.channel = ""
        self.joined = False

    async def join(self) -> bool:
        record = await records.find_or_refuse(self.stream, self.webrtc_id, live=False)
        if not record.is_live:
            return False
        channel_layer = layer()
        self.channel = await channel_layer.new_channel("rtcstream.sub.")
        await _broker(
            f"subscribing to the outputs of session {self.webrtc_id!r}",
            channel_layer.group_add(self.group, self.channel),
        )
        self.joined = True
        return True

    async def __aiter__(self) -> AsyncIterator[AdditionalOutputs]:
        if not self.joined:
            return
        channel_layer = layer()
        failures = 0
        rejoin = False
        try:
            # The session may have ended between the check and joining the group.
            if not await _is_live(self.stream, self.webrtc_id):
                return
            while True:
                try:
                    if rejoin:
                        await asyncio.wait_for(
                            channel_layer.group_add(self.group, self.channel), BROKER_TIMEOUT
                        )
                        rejoin = False
                    message = await asyncio.wait_for(
                        channel_layer.receive(self.channel), LIVE_RECHECK_SECONDS
                    )
                except Exception as exc:  # our timeout, or the broker is away
                    rejoin = True
                    if not isinstance(exc, asyncio.TimeoutError):
                        failures += 1
                        if failures == 1:
                            logger.warning(
                                "Output subscription of %s: the channel layer "
                                "cannot be reached (%r); retrying",
                                self.webrtc_id,
                                exc,
                            )
                        await asyncio.sleep(backoff(failures))
                    # A dead worker sends no end marker: fall back on the record.
                    if not await _is_live(self.stream, self.webrtc_id):
                        return
                    continue
                retrieve_cleaner_errors(channel_layer)
                if failures:
                    logger.warning(
                        "Output subscription of %s: the channel layer is back "
                        "after %d failed reads",
                        self.webrtc_id,
                        failures,
                    )
                    failures = 0
                if message["type"] == "rtc.output":
                    yield AdditionalOutputs(*pickle.loads(message["args"]))
                elif message["type"] == "rtc.output_end":
                    return
        finally:
            try:
                await asyncio.wait_for(
                    channel_layer.group_discard(self.group, self.channel), BROKER_TIMEOUT
                )
            except Exception as exc:  # the group entry expires with the broker's data
                logger.debug(
                    "Output subscription of %s: leaving the group failed: %r", self.webrtc_id, exc
                )


async def subscribe_outputs(stream: str, webrtc_id: str) -> AsyncIterator[AdditionalOutputs]:
    """Yield a session's outputs until it ends; see ``Stream.output_stream``."""
    subscription = OutputSubscription(stream, webrtc_id)
    if not await subscription.join():
        return
    async for output in subscription:
        yield output


async def _is_live(stream: str, webrtc_id: str) -> bool:
    """Whether the session's record is live; True while the database is away (the
    subscription goes on: the end marker comes through the broker, and the record is
    looked at again later)."""
    try:
        record = await records.find(stream, webrtc_id)
    except DatabaseUnavailable:
        return True
    return record is not None and record.is_live


async def latest_output(stream: str, webrtc_id: str, timeout: float) -> AdditionalOutputs:
    try:
        payload = await asyncio.wait_for(cache.aget(latest_key(webrtc_id)), BROKER_TIMEOUT)
    except Exception as exc:  # a cache on the broker that is away: wait for the next one
        logger.debug("Latest output of %s not read: %r", webrtc_id, exc)
        payload = None
    if payload is not None:
        return AdditionalOutputs(*pickle.loads(payload))

    async def first() -> AdditionalOutputs:
        async for output in subscribe_outputs(stream, webrtc_id):
            return output
        raise TimeoutError(f"Session {webrtc_id!r} ended without outputs")

    return await asyncio.wait_for(first(), timeout)
