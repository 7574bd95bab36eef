"""Pre-encoded marker media for the load client: encoded once, replayed by every session.

The stock benchmark client encodes and decodes like the server does, so on a
small machine the clients take as much CPU as the server and every server
"holds" the same few sessions. This module makes a session nearly free on the
client side while the server's receive path stays aiortc's own:

- **Send.** The marked video (``bench/markers.py``, 640x480 @ 30) and marked
  audio are encoded once per client process with aiortc's own encoders
  (``Vp8Encoder``, ``OpusEncoder``: the bitrate, packetization and codec
  options the stock client uses). Each session's track hands aiortc's
  ``RTCRtpSender`` those encoded frames as ``av.Packet`` objects; the sender
  then only packetizes them (``Encoder.pack``), gives them its own SSRC,
  sequence numbers and RTP timestamps (fresh for every session), encrypts and
  sends them. A keyframe request (PLI/FIR) from the server restarts the video
  loop at its keyframe, as an encoder would answer with one.
- **Receive.** Sessions that measure the round trip decode, as before, to read
  the returned marker. The others count: ``count_only(track)`` replaces the
  aiortc decoder thread of that one receiver by a loop that records each
  reassembled frame's arrival time. Video frames back are counted undecoded;
  audio is decoded in that thread (Opus is cheap, and aiortc's encoder sends
  constant-size packets, so size cannot tell a burst from silence) and a burst
  back is a loud frame after a quiet one. Nothing wakes the event loop per frame.

Loops: video repeats every ``VIDEO_LOOP`` frames (its first is a keyframe, and
its marker counter is the position in the loop, so the returned frame maps back
to the last frame sent at that position); audio every ``AUDIO_LOOP`` frames,
which is exactly the marker's own period (48 burst ids, one burst every 3
frames), encoded twice so the loop starts with the encoder already in its
steady state.
"""

from __future__ import annotations

import asyncio
import fractions
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import rtcrtpreceiver
from aiortc.codecs import get_decoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.mediastreams import MediaStreamTrack

from bench.markers import (
    AUDIO_TIME_BASE,
    BURST_EVERY,
    BURST_IDS,
    FPS,
    FRAME_SAMPLES,
    VIDEO_TIME_BASE,
    AudioMarker,
    VideoMarker,
)

VIDEO_LOOP = 150  # frames: 5 s at 30 fps, one keyframe each loop
AUDIO_LOOP = BURST_EVERY * BURST_IDS  # 144 frames (2.88 s): the audio marker's period
LOUD = 0.08 * 32768  # the marker detector's threshold: a sample above it is a burst

now = time.monotonic


@dataclass
class EncodedMedia:
    """The encoded loops: VP8 frames (bitstream, not RTP payloads) and Opus packets."""

    video: list[bytes]
    audio: list[bytes]
    video_bitrate: int
    encode_seconds: float
    sizes: dict[str, float] = field(default_factory=dict)


def encode_media(video_bitrate: int | None = None, video: bool = True) -> EncodedMedia:
    """Encode the marker loops once with aiortc's encoders (about a second of CPU for video)."""
    t0 = time.process_time()
    frames: list[bytes] = []
    encoder = Vp8Encoder()
    if video_bitrate:
        encoder.target_bitrate = video_bitrate
    if video:
        marker = VideoMarker()
        for pos in range(VIDEO_LOOP):
            frame = marker.frame(pos)
            frame.pts = pos * 90000 // FPS
            frame.time_base = VIDEO_TIME_BASE
            payloads, _ = encoder.encode(frame, force_keyframe=pos == 0)
            frames.append(b"".join(vp8_depayload(p) for p in payloads))
    audio: list[bytes] = []
    opus = OpusEncoder()
    marker_a = AudioMarker()
    for n in range(2 * AUDIO_LOOP):  # the second period: the encoder's state is steady
        frame, _ = marker_a.frame(n)
        payloads, _ = opus.encode(frame)
        if n >= AUDIO_LOOP:
            audio.append(b"".join(payloads))
    sizes = {
        "video_kbps": sum(map(len, frames)) * 8 / (len(frames) / FPS) / 1000 if frames else 0.0,
        "keyframe_bytes": float(len(frames[0])) if frames else 0.0,
        "opus_kbps": sum(map(len, audio)) * 8 / (len(audio) * 0.02) / 1000,
    }
    return EncodedMedia(frames, audio, encoder.target_bitrate, time.process_time() - t0, sizes)


def _packet(data: bytes, pts: int, time_base: fractions.Fraction) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = pts
    packet.time_base = time_base
    return packet


class ReplayVideoTrack(MediaStreamTrack):
    """The encoded video loop in real time; ``sent[n]`` is when frame n was handed over.

    Attributes shared with the stock ``MarkerVideoTrack`` (``sent``, ``marker``) let
    the client's ``Session`` read the returned frames the same way; ``index_of``
    maps a returned marker counter (a loop position) to the frame index.
    """

    kind = "video"

    def __init__(self, media: EncodedMedia) -> None:
        super().__init__()
        self.media = media
        self.marker = VideoMarker()
        self.sent: list[float] = []
        self.sender: Any = None  # set once added: its keyframe requests are read here
        self.keyframes = 0  # loop restarts asked for by the server
        self._pos = 0
        self._latest: dict[int, int] = {}  # loop position -> last frame index sent there
        self._start: float | None = None

    def index_of(self, counter: int) -> int | None:
        return self._latest.get(counter)

    def _keyframe_requested(self) -> bool:
        sender = self.sender
        if sender is None or not getattr(sender, "_RTCRtpSender__force_keyframe", False):
            return False
        sender._RTCRtpSender__force_keyframe = False  # what the sender's encoder would do
        return True

    async def recv(self) -> av.Packet:
        n = len(self.sent)
        if self._start is None:
            self._start = now()
        delay = self._start + n / FPS - now()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._keyframe_requested() and self._pos != 0:
            self._pos = 0
            self.keyframes += 1
        pos = self._pos
        self._pos = (pos + 1) % VIDEO_LOOP
        self._latest[pos] = n
        self.sent.append(now())
        return _packet(self.media.video[pos], n * 90000 // FPS, VIDEO_TIME_BASE)


class ReplayAudioTrack(MediaStreamTrack):
    """The encoded audio loop in real time, 20 ms packets; ``sent[b]``: burst b handed over."""

    kind = "audio"

    def __init__(self, media: EncodedMedia) -> None:
        super().__init__()
        self.media = media
        self.frames = 0
        self.sent: list[float] = []
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        n = self.frames
        if self._start is None:
            self._start = now()
        delay = self._start + n * 0.02 - now()
        if delay > 0:
            await asyncio.sleep(delay)
        self.frames += 1
        if n % BURST_EVERY == 0:
            self.sent.append(now())
        data = self.media.audio[n % AUDIO_LOOP]
        return _packet(data, n * FRAME_SAMPLES, AUDIO_TIME_BASE)


# -- receiving without decoding --------------------------------------------------------------


class ArrivalCounter:
    """Arrival times (and, for audio, loudness) of the frames one receiver reassembled.

    Written by the receiver's worker thread (list appends are atomic), read by
    the client once the window is over.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.times: list[float] = []
        self.loud: list[bool] = []

    def add(self, t: float, loud: bool = True) -> None:
        self.loud.append(loud)  # first: a reader that sees the time sees its loudness
        self.times.append(t)

    def returns(self) -> list[float]:
        """Video: every frame's arrival. Audio: each burst's (a loud packet after a quiet one)."""
        if self.kind == "video":
            return list(self.times)
        out, quiet = [], True
        # loud may be one ahead of times (add() runs beside this reader): zip drops it.
        for t, loud in zip(list(self.times), list(self.loud), strict=False):
            if loud and quiet:
                out.append(t)
            quiet = not loud
        return out


_counted: dict[int, ArrivalCounter] = {}  # id(track._queue) -> its counter
_lock = threading.Lock()
_stock_worker = rtcrtpreceiver.decoder_worker


def _worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue,
    output_q: asyncio.Queue,
    decode_error: threading.Event,
) -> None:
    with _lock:
        counter = _counted.pop(id(output_q), None)
    if counter is None:
        _stock_worker(loop, input_q, output_q, decode_error)
        return
    decoder = None
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)  # the track ends
            return
        codec, encoded = task
        if counter.kind == "video":
            counter.add(now())
            continue
        if decoder is None:
            decoder = get_decoder(codec)
        try:
            frames = decoder.decode(encoded)
        except av.FFmpegError:
            continue
        for frame in frames:
            counter.add(now(), bool(np.abs(frame.to_ndarray()).max() > LOUD))


def count_only(track: MediaStreamTrack) -> ArrivalCounter:
    """Count ``track``'s frames instead of decoding them (call from the ``track`` event,
    before the connection starts its receivers)."""
    counter = ArrivalCounter(track.kind)
    with _lock:
        _counted[id(track._queue)] = counter  # type: ignore[attr-defined]
    rtcrtpreceiver.decoder_worker = _worker  # idempotent; stock for every other receiver
    return counter
