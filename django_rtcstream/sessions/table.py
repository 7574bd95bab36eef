"""The process-local table of live sessions, by ``webrtc_id``.

One per worker process, on purpose: a peer connection cannot leave the process
that created it. The ``SessionManager`` adds and removes; anything in this
process may look up (the bus, to deliver locally without a broker round trip).
Other workers never read it; they reach sessions through the control bus.
This module imports nothing of the package, so that every layer may read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_rtcstream.sessions.runtime import Session

sessions: dict[str, Session] = {}


def get(webrtc_id: str) -> Session | None:
    """The session with this id if this process owns it."""
    return sessions.get(webrtc_id)
