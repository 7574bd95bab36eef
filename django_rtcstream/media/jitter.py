"""Jitter buffers that release media as soon as it is complete: audio and video.

aiortc's audio receiver builds ``JitterBuffer(capacity=16, prefetch=4)``: it
releases a frame only once four newer ones have arrived (80 ms at 20 ms
frames), waits for a lost packet until 16 packets pile up (~320 ms), and a
burst of reordering deepens it for good. None of that buys protection against
jitter: the buffer releases on packet arrival and never paces (measured in
shared/reference/aiortc-audio-latency.md).

``AudioJitterBuffer`` keeps aiortc's interface (``add(packet) -> (pli,
frame)``) and instead:

- releases each frame, in order, once ``prefetch`` newer packets have
  arrived (1 by default: 20 ms; 0 releases on arrival);
- gives up on a missing packet as soon as more packets have arrived after it
  than the hold (the deepest reordering it expects), and goes on with the
  next one: the wait is bounded by the hold (aiortc waits for 16 packets), and
  on a link that loses but does not reorder a loss costs that one frame and
  no delay;
- shrinks back: when frames stay queued beyond the target for
  ``shrink_after`` arrivals (after reordering), the oldest is dropped;
- adapts (``adaptive=True``, the default): a packet that arrives behind
  newer ones raises the target hold to the depth of that reordering (up to
  ``max_prefetch``), and every ``calm_after`` in-order arrivals without
  reordering lower it by one, back to ``prefetch``.

Why give up by count and adapt: the buffer hands out one frame per arrival
(aiortc's interface), so every frame period spent waiting for a packet that
never comes leaves a frame of backlog, which only drains by dropping a frame:
a 60 ms wait turned one lost packet into three lost frames. Waiting exactly
as long as the link reorders avoids that; on a link that keeps reordering, a
hold as deep as the reordering releases every frame, in order, one per
arrival, and costs one frame period per level only while the link is bad.

Video has the same kind of hold: aiortc's video buffer knows a frame is
complete only when the first packet of the *next* frame arrives, one frame
period later (33 ms at 30 fps, on each receiving end). ``MarkerVideoJitterBuffer``
releases a frame as soon as its last packet (the one with the RTP marker bit,
which WebRTC senders set on the last packet of every frame) has arrived and
every packet before it is there; a frame whose marker packet never came is
still completed by the next frame's start, as aiortc does.

Both are put in place of aiortc's through ``install*()``, a seam checked by
``check_seam()`` at start-up: if aiortc's private attribute moves, the server
fails loudly instead of silently keeping the slower buffers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.utils import uint16_add, uint16_gt

if TYPE_CHECKING:  # pragma: no cover
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import MediaStreamTrack

SEAM = "_RTCRtpReceiver__jitter_buffer"


class AudioJitterBuffer:
    """See the module docstring. Audio only: one RTP packet is one frame."""

    def __init__(
        self,
        prefetch: int = 1,
        capacity: int = 16,
        shrink_after: int = 10,
        adaptive: bool = True,
        max_prefetch: int = 6,
        calm_after: int = 150,
    ) -> None:
        if prefetch < 0 or prefetch >= capacity:
            raise ValueError("prefetch must be >= 0 and below the capacity")
        if adaptive and not prefetch <= max_prefetch < capacity:
            raise ValueError("max_prefetch must be between prefetch and the capacity")
        self.prefetch = prefetch
        self._capacity = capacity
        self.shrink_after = shrink_after
        self.adaptive = adaptive
        self.max_prefetch = max_prefetch if adaptive else prefetch
        self.calm_after = calm_after
        self.target = prefetch  # frames held now; moves only in adaptive mode
        self.peak_target = prefetch
        self._calm = 0
        self._packets: dict[int, Any] = {}
        self._next: int | None = None
        self._newest: int | None = None
        self._over_target = 0
        self.lost = 0  # packets given up on
        self.late = 0  # packets that arrived after their slot was given up
        self.dropped = 0  # frames dropped to shrink back

    @property
    def capacity(self) -> int:
        return self._capacity

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._next is None:
            self._next = self._newest = seq
        elif not _at_or_after(seq, self._next):
            self.late += 1
            self._adapt(seq)
            return False, None
        elif uint16_add(seq, -self._next) >= 0x8000 // 2:
            # A huge jump (stream restart): start over from this packet.
            self._packets.clear()
            self._next = self._newest = seq
        self._adapt(seq)
        self._packets[seq] = packet
        return False, self._release()

    def _adapt(self, seq: int) -> None:
        """Track the newest packet; in adaptive mode, move the target hold."""
        assert self._newest is not None
        if uint16_gt(seq, self._newest):
            self._newest = seq
            if self.target > self.prefetch:
                self._calm += 1
                if self._calm >= self.calm_after:
                    self.target -= 1
                    self._calm = 0
            return
        # Reordered: this packet arrived after ``depth`` newer ones.
        depth = uint16_add(self._newest, -seq)
        if self.adaptive and depth > self.target:
            self.target = min(self.max_prefetch, depth)
            self.peak_target = max(self.peak_target, self.target)
        self._calm = 0

    def _queued(self) -> int:
        """Consecutive packets from the next one to release."""
        assert self._next is not None
        n, seq = 0, self._next
        while seq in self._packets:
            n += 1
            seq = uint16_add(seq, 1)
        return n

    def _release(self) -> JitterFrame | None:
        assert self._next is not None
        if self._next not in self._packets:
            # More packets after the gap than the link reorders by: it is lost.
            if len(self._packets) <= self.target:
                return None
            # Give up on the missing packet(s): go on from the oldest one we have.
            oldest = min(self._packets, key=lambda s: uint16_add(s, -self._next))  # type: ignore[operator]
            self.lost += uint16_add(oldest, -self._next)
            self._next = oldest
        # Held frames are counted by what arrived after this one, so a gap after it
        # does not hold it back.
        newer = len(self._packets) - 1
        if newer < self.target:
            self._over_target = 0
            return None
        # More queued than the target (after reordering or a loss): shrink back.
        if newer > self.target and self._queued() > 1:
            self._over_target += 1
            if self._over_target >= self.shrink_after:
                self._pop()
                self.dropped += 1
                self._over_target = 0
        else:
            self._over_target = 0
        packet = self._pop()
        return JitterFrame(data=packet._data, timestamp=packet.timestamp)

    def _pop(self) -> Any:
        assert self._next is not None
        packet = self._packets.pop(self._next)
        self._next = uint16_add(self._next, 1)
        return packet


def _at_or_after(seq: int, ref: int) -> bool:
    return seq == ref or uint16_gt(seq, ref)


class MarkerVideoJitterBuffer(JitterBuffer):
    """aiortc's video buffer (reordering, overflow, PLI), releasing frames on the marker bit."""

    def __init__(self, capacity: int = 512) -> None:
        super().__init__(capacity=capacity, is_video=True)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        assert self._origin is not None
        packets: list[Any] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                return None  # a packet of this frame is still missing
            if packets and packet.timestamp != packets[0].timestamp:
                break  # the next frame began: this one lost its marker packet
            packets.append(packet)
            if packet.marker:
                break
        else:
            return None
        self.remove(len(packets))
        return JitterFrame(data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp)


class _ClosedCheckTransport:
    state = "new"


def check_seam() -> None:
    """Fail loudly if aiortc no longer keeps its jitter buffers where we replace them, or
    its video buffer no longer completes frames through ``_remove_frame``."""
    import aiortc
    from aiortc.rtp import RtpPacket

    for kind in ("audio", "video"):
        receiver = RTCRtpReceiver(kind, _ClosedCheckTransport())  # type: ignore[arg-type]
        current = getattr(receiver, SEAM, None)
        if not isinstance(current, JitterBuffer) or not hasattr(current, "add"):
            raise RuntimeError(
                f"aiortc {aiortc.__version__} moved its {kind} jitter buffer ({SEAM}); "
                "django-rtcstream's low-latency buffers cannot be installed. Pin a supported "
                "aiortc, or set RTCSTREAM['AUDIO_PREFETCH'] = None and "
                "RTCSTREAM['VIDEO_MARKER_RELEASE'] = False to keep aiortc's buffers."
            )
    probe = MarkerVideoJitterBuffer(capacity=16)
    released = []
    for seq, marker in ((0, 0), (1, 1)):
        packet = RtpPacket(sequence_number=seq, timestamp=3000, marker=marker)
        packet._data = b"x"  # type: ignore[attr-defined]
        released.append(probe.add(packet)[1])
    if released[0] is not None or released[1] is None or released[1].data != b"xx":
        raise RuntimeError(
            f"aiortc {aiortc.__version__}'s JitterBuffer no longer completes frames through "
            "_remove_frame; set RTCSTREAM['VIDEO_MARKER_RELEASE'] = False or pin aiortc."
        )


def install(receiver: RTCRtpReceiver, prefetch: int, adaptive: bool = True) -> AudioJitterBuffer:
    """Replace an audio receiver's jitter buffer before any packet arrives."""
    if not isinstance(getattr(receiver, SEAM, None), JitterBuffer):
        raise RuntimeError(f"{receiver!r} has no aiortc jitter buffer to replace")
    buffer = AudioJitterBuffer(prefetch=prefetch, adaptive=adaptive, max_prefetch=max(prefetch, 6))
    setattr(receiver, SEAM, buffer)
    return buffer


def install_video(receiver: RTCRtpReceiver) -> MarkerVideoJitterBuffer:
    """Replace a video receiver's jitter buffer before any packet arrives."""
    current = getattr(receiver, SEAM, None)
    if not isinstance(current, JitterBuffer):
        raise RuntimeError(f"{receiver!r} has no aiortc jitter buffer to replace")
    buffer = MarkerVideoJitterBuffer(capacity=current.capacity)
    setattr(receiver, SEAM, buffer)
    return buffer


def _receiver_of(pc: RTCPeerConnection, track: MediaStreamTrack) -> RTCRtpReceiver | None:
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.track is track:
            return transceiver.receiver
    return None


def install_on_track(
    pc: Any,
    track: Any,
    prefetch: int | None,
    adaptive: bool = True,
    video_marker_release: bool = False,
) -> Any:
    """Install our buffer on the receiver of a remote ``track`` of ``pc``.

    Audio: ``prefetch`` None keeps aiortc's buffer. Video: only with
    ``video_marker_release``. Returns the buffer installed, or None.
    """
    receiver = _receiver_of(pc, track)
    if receiver is None:
        return None
    if track.kind == "audio" and prefetch is not None:
        return install(receiver, prefetch, adaptive)
    if track.kind == "video" and video_marker_release:
        return install_video(receiver)
    return None
