"""A session's outputs on their way to the output group, in order, never blocking.

One task publishes a session's ``AdditionalOutputs`` in order, so neither the
media nor the handler waits on the channel layer. While the layer is away the
newest ``OUTPUT_BUFFER`` outputs are kept (older ones dropped and counted) and
published when it is back; the session goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from django_rtcstream import background
from django_rtcstream.handlers import AdditionalOutputs
from django_rtcstream.sessions import bus, outputs

logger = logging.getLogger(__name__)

OUTPUT_BUFFER = 32  # outputs a session keeps while the channel layer is away (the newest)
OUTPUT_FLUSH_WAIT = 1.0  # seconds a closing session gives its kept outputs to go out


class Outbox:
    """The outputs of one session, published by one task started on first use."""

    def __init__(self, webrtc_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.webrtc_id, self.loop = webrtc_id, loop
        self._queue: deque[AdditionalOutputs] = deque()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._dropped = 0
        self._publisher: asyncio.Task[None] | None = None

    def put(self, output: AdditionalOutputs) -> None:
        """Queue an output for the publisher; never waits, never fails."""
        if len(self._queue) >= OUTPUT_BUFFER:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append(output)
        self._wake.set()
        if self._publisher is None:
            self._publisher = background.start(
                self._publish(), "output publisher", webrtc_id=self.webrtc_id, loop=self.loop
            )

    async def _publish(self) -> None:
        failures = 0
        while True:
            if not self._queue:
                if self._closing.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            output = self._queue[0]
            if await outputs.publish_output(self.webrtc_id, output):
                if self._queue and self._queue[0] is output:
                    self._queue.popleft()
                if failures:
                    logger.info(
                        "Outputs of session %s reach the channel layer again; %d were "
                        "dropped while it was away",
                        self.webrtc_id,
                        self._dropped,
                    )
                    failures = self._dropped = 0
                continue
            failures += 1
            if failures == 1:  # one warning per outage, not one per output
                logger.warning(
                    "Outputs of session %s cannot reach the channel layer: the "
                    "newest %d are kept and published when it is back, older ones "
                    "dropped; the session goes on",
                    self.webrtc_id,
                    OUTPUT_BUFFER,
                )
            if self._closing.is_set():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), bus.backoff(failures))

    async def finish(self) -> None:
        """Closing: give the kept outputs a moment to go out, before the end marker."""
        task = self._publisher
        if task is None:
            return
        self._closing.set()
        self._wake.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), OUTPUT_FLUSH_WAIT)
        if not task.done():
            task.cancel()
        if self._queue or self._dropped:
            logger.warning(
                "Session %s ended with %d outputs never published (the channel layer was away)",
                self.webrtc_id,
                len(self._queue) + self._dropped,
            )
