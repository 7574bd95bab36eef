"""A Python (aiortc) client for any django-rtcstream stream.

    async with StreamClient("http://127.0.0.1:8000/rtc/", "flip",
                            video=SyntheticVideoTrack()) as client:
        frame = await client.video_frames.get()

It reads the stream's ``config`` to learn modality and mode, negotiates over
HTTP (FastRTC-compatible offer) or the WebSocket signaling, sends the tracks
given (or nothing), and exposes what comes back: ``video_frames`` and
``audio_frames`` queues (latest kept when full) and ``messages`` (data
channel and signaling messages). When the server's worker drains (it is being
stopped) and the stream allows it, the client connects again, to the next of its
URLs or the same one (a load balancer's next worker), and hangs up the old session
once the new one is connected (``reconnect_on_drain``). From a shell::

    python -m django_rtcstream.client http://127.0.0.1:8000/rtc/ flip \\
        --input in.mp4 --output out.mp4 --seconds 10
"""

from __future__ import annotations

# The package's parts, all importable from here as before the split:
# django_rtcstream.client.StreamClient and the rest.
from django_rtcstream.client.http import (
    SignalingFailed as SignalingFailed,
    _http_json as _http_json,
    http_json as http_json,
)
from django_rtcstream.client.stream_client import StreamClient as StreamClient
from django_rtcstream.client.tracks import (
    ArrayAudioTrack as ArrayAudioTrack,
    SyntheticVideoTrack as SyntheticVideoTrack,
    ToneAudioTrack as ToneAudioTrack,
)

__all__ = [
    "ArrayAudioTrack",
    "SignalingFailed",
    "StreamClient",
    "SyntheticVideoTrack",
    "ToneAudioTrack",
    "http_json",
]
