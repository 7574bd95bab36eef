"""Outputs on the bus: the owner publishes, subscribers on any worker read.

Every output subscriber (the SSE hook, ``stream.output_stream``) joins the
session's output group (``bus.output_group``); the owner sends each
``AdditionalOutputs`` to it, keeps the latest in the cache, and sends an end
marker when the session closes. Outputs travel pickled (the channel layer is
trusted infrastructure, like Django's cache) so ``output_stream`` yields the
handler's own objects on every worker. While the broker is away, publishing
reports failure instead of raising and subscribers retry (see ``bus``).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import AsyncGenerator

from django.core.cache import cache

from django_rtcstream.exceptions import DatabaseUnavailable, UnknownSession
from django_rtcstream.handlers import AdditionalOutputs
from django_rtcstream.sessions import bus, records

logger = logging.getLogger(__name__)


def _dumps(output: AdditionalOutputs) -> bytes:
    return pickle.dumps(output.args, protocol=pickle.HIGHEST_PROTOCOL)


async def publish_output(webrtc_id: str, output: AdditionalOutputs) -> bool:
    """Called by the owner: fan an output out to every subscriber, keep it as the latest.

    Never raises for the broker: returns False when the output could not be handed to
    the channel layer within ``bus.BROKER_TIMEOUT`` (the session keeps it for later, see
    ``sessions.outbox``). The latest-output cache is best effort.
    """
    try:
        payload = _dumps(output)
    except Exception:  # an unpicklable result still reaches subscribers as text
        payload = _dumps(AdditionalOutputs(*[repr(a) for a in output.args]))
    try:  # first, so that a subscriber that got it finds it as the latest too
        await asyncio.wait_for(
            cache.aset(bus.latest_key(webrtc_id), payload, timeout=3600), bus.BROKER_TIMEOUT
        )
    except Exception as exc:
        logger.debug("Latest output of %s not cached: %r", webrtc_id, exc)
    try:
        await asyncio.wait_for(
            bus.layer().group_send(
                bus.output_group(webrtc_id), {"type": "rtc.output", "args": payload}
            ),
            bus.BROKER_TIMEOUT,
        )
    except Exception as exc:
        logger.debug("Output of %s not published: %r", webrtc_id, exc)
        return False
    return True


async def publish_end(webrtc_id: str) -> bool:
    """Tell the session's subscribers it ended; False if the broker could not take it
    (they then see it in the record, within ``bus.LIVE_RECHECK_SECONDS``). Never raises."""
    try:
        await asyncio.wait_for(
            bus.layer().group_send(bus.output_group(webrtc_id), {"type": "rtc.output_end"}),
            bus.BROKER_TIMEOUT,
        )
    except Exception as exc:
        logger.warning(
            "End of session %s not published (%r): its subscribers see it in "
            "the record within %g s",
            webrtc_id,
            exc,
            bus.LIVE_RECHECK_SECONDS,
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
    after every ``bus.LIVE_RECHECK_SECONDS`` without a message, which covers a restart
    that happened between two reads.
    """

    def __init__(self, stream: str, webrtc_id: str) -> None:
        self.stream = stream
        self.webrtc_id = webrtc_id
        self.group = bus.output_group(webrtc_id)
        self.channel = ""
        self.joined = False

    async def join(self) -> bool:
        record = await records.find(self.stream, self.webrtc_id)
        if record is None:
            raise UnknownSession(self.webrtc_id)
        if not record.is_live:
            return False
        channel_layer = bus.layer()
        # The default prefix, as every consumer's channel has: channels-redis lets one
        # receive() at a time read Redis for the whole process, and it reads only the
        # prefix of its own channel. A WebSocket consumer of this worker waiting on
        # "specific.<id>!" would starve a "rtcstream.sub.<id>!" channel for ever (its
        # outputs were never read, and SSE got nothing from WebSocket-signaled sessions).
        self.channel = await channel_layer.new_channel()
        await bus._broker(
            f"subscribing to the outputs of session {self.webrtc_id!r}",
            channel_layer.group_add(self.group, self.channel),
        )
        self.joined = True
        return True

    async def __aiter__(self) -> AsyncGenerator[AdditionalOutputs, None]:
        if not self.joined:
            return
        channel_layer = bus.layer()
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
                            channel_layer.group_add(self.group, self.channel), bus.BROKER_TIMEOUT
                        )
                        rejoin = False
                    message = await asyncio.wait_for(
                        channel_layer.receive(self.channel), bus.LIVE_RECHECK_SECONDS
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
                        await asyncio.sleep(bus.backoff(failures))
                    # A dead worker sends no end marker: fall back on the record.
                    if not await _is_live(self.stream, self.webrtc_id):
                        return
                    continue
                bus.retrieve_cleaner_errors(channel_layer)
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
                    channel_layer.group_discard(self.group, self.channel), bus.BROKER_TIMEOUT
                )
            except Exception as exc:  # the group entry expires with the broker's data
                logger.debug(
                    "Output subscription of %s: leaving the group failed: %r", self.webrtc_id, exc
                )


async def subscribe_outputs(stream: str, webrtc_id: str) -> AsyncGenerator[AdditionalOutputs, None]:
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
        payload = await asyncio.wait_for(cache.aget(bus.latest_key(webrtc_id)), bus.BROKER_TIMEOUT)
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
