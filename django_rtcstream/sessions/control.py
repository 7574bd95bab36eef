"""A session's control channel: inputs, candidates and closes from any worker.

The channel is a key in the broker that senders write to (``bus``) and the
owning worker's session reads here: after a broker restart, reading again is
all it takes. A failed read (the broker is away, or redis-py's socket timeout
cut a blocking read, see check W002) never ends the session: the loop retries
with a bounded backoff and warns once until a message arrives again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from django_rtcstream.sessions import bus

if TYPE_CHECKING:
    from django_rtcstream.sessions.runtime import Session

logger = logging.getLogger(__name__)


async def read(session: Session) -> None:
    """Read and apply the session's control messages until the session's task is cancelled."""
    channel_layer = bus.layer()
    name = bus.control_channel(session.webrtc_id)
    loop = session.loop
    failures = 0
    warned = False
    while True:
        started = loop.time()
        try:
            message = await channel_layer.receive(name)
        except Exception as exc:
            if loop.time() - started >= 1.0:
                failures = 0  # it had been reading for a while: a cut read, not an outage
            failures += 1
            if not warned:
                logger.warning(
                    "Control channel of %s: receive failed (%r); retrying", session.webrtc_id, exc
                )
                warned = True
            await asyncio.sleep(bus.backoff(failures))
            continue
        bus.retrieve_cleaner_errors(channel_layer)
        if warned:
            logger.info("Control channel of %s: the channel layer answers again", session.webrtc_id)
        failures, warned = 0, False
        try:
            await apply(session, channel_layer, message)
        except Exception:
            logger.warning(
                "Bad control message for %s: %r", session.webrtc_id, message, exc_info=True
            )


async def apply(session: Session, channel_layer: Any, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind == "rtc.ice":
        await session.add_candidate(message.get("candidate"))
    elif kind == "rtc.input":
        session.set_inputs(message["values"])
    elif kind == "rtc.input_update":
        values = session.update_inputs(message["changes"])
        await channel_layer.send(message["reply"], {"type": "rtc.inputs", "values": values})
    # A close meant for an earlier session that used this id is stale.
    elif kind == "rtc.close" and message.get("sent_at", 0) >= session.started_wall - 1.0:
        session.request_close(message.get("reason") or "closed_by_server")
