"""What an offer's SDP must hold before aiortc sees it.

aiortc parses the whole SDP in ``setRemoteDescription`` and refuses much that
is malformed, but not all: an offer whose BUNDLE group names a mid no m=
section has leaves its transceivers without a transport, and aiortc then fails
with AttributeError in ``createAnswer`` and in a task of its own that nobody
awaits. Reading the m= lines, mids and BUNDLE group here (text only, a few
microseconds) refuses those offers with a clear ``invalid_offer`` instead.

It also caps the m= sections. A session uses one audio, one video and one data
section, but aiortc builds a transceiver for every section it is offered, on the
event loop that carries every session's media: about 0.65 ms of CPU per section,
so a 250 kB offer of 200 sections held the loop for 130 ms and made the other
sessions' audio skip.
"""

from __future__ import annotations

from dataclasses import dataclass

from django_rtcstream.errors import ErrorCode
from django_rtcstream.exceptions import SignalingError

__all__ = ["MAX_MEDIA_SECTIONS", "OfferShape", "read_offer"]

# Browsers offer one section per track plus one for data channels; a client that adds
# a few spare transceivers stays far below this.
MAX_MEDIA_SECTIONS = 16


@dataclass(frozen=True)
class OfferShape:
    kinds: frozenset[str]  # "audio", "video"
    has_data: bool


def _refuse(why: str) -> SignalingError:
    return SignalingError(ErrorCode.INVALID_OFFER, f"The offer was refused: {why}.")


def read_offer(sdp: object) -> OfferShape:
    """The media kinds of an offer, once its sections and BUNDLE group agree.

    Raises:
        SignalingError: ``invalid_offer``, saying what is wrong.
    """
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError(ErrorCode.INVALID_OFFER, "The offer has no SDP.")
    media: list[str] = []
    mids: list[str | None] = []
    bundles: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            media.append(line[2:].split(" ", 1)[0])
            mids.append(None)
        elif line.startswith("a=mid:") and media:
            if mids[-1] is not None:
                raise _refuse(f"m= section {len(media)} has two a=mid lines")
            mids[-1] = line[6:].strip()
        elif line.startswith("a=group:BUNDLE"):
            bundles.append(line[len("a=group:BUNDLE") :].split())
    if len(media) > MAX_MEDIA_SECTIONS:
        raise _refuse(
            f"it has {len(media)} m= sections; a session uses at most one audio, one video and"
            f" one data channel section, and at most {MAX_MEDIA_SECTIONS} are read"
        )
    kinds = frozenset(kind for kind in media if kind in ("audio", "video"))
    has_data = "application" in media
    if not kinds and not has_data:
        raise SignalingError(ErrorCode.INVALID_OFFER, "The offer has no media and no data channel.")
    named = [mid for mid in mids if mid is not None]
    if len(set(named)) != len(named):
        raise _refuse("two m= sections share a mid")
    if len(bundles) > 1:
        raise _refuse("it has more than one BUNDLE group")
    for item in bundles[0] if bundles else []:
        if item not in named:
            raise _refuse(f"its BUNDLE group names mid {item!r}, which no m= section has")
    return OfferShape(kinds, has_data)
