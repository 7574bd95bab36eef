"""``python -m django_rtcstream.client``: stream a file (or test media) to a stream and
save what comes back."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from django_rtcstream.client.stream_client import StreamClient
from django_rtcstream.client.tracks import SyntheticVideoTrack, ToneAudioTrack


async def _main(args: argparse.Namespace) -> None:
    from aiortc.contrib.media import MediaBlackhole, MediaPlayer, MediaRecorder

    player = MediaPlayer(args.input) if args.input else None
    client = StreamClient(
        args.base_url,
        args.stream,
        signaling=args.signaling,
        video=(player.video if player else SyntheticVideoTrack()),
        audio=(player.audio if player else ToneAudioTrack()),
        ice_host_addresses=args.ice_host,
        relay_only=True if args.relay_only else None,
    )
    await client.connect()
    print(f"connected: session {client.webrtc_id}")
    recorder = MediaRecorder(args.output) if args.output else MediaBlackhole()
    assert client.pc is not None
    for receiver in client.pc.getReceivers():
        if receiver.track is not None:
            recorder.addTrack(receiver.track)
    await recorder.start()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            message = await asyncio.wait_for(client.messages.get(), deadline - time.monotonic())
            print(json.dumps(message))
        except TimeoutError:
            break
    await recorder.stop()
    await client.close()
    print(f"received {client.received}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m django_rtcstream.client",
        description="Stream media to a django-rtcstream stream.",
    )
    parser.add_argument("base_url", help="the app's HTTP prefix, e.g. http://127.0.0.1:8000/rtc/")
    parser.add_argument("stream", help="stream name")
    parser.add_argument("--input", help="media file to send (default: synthetic video/tone)")
    parser.add_argument("--output", help="file to save what comes back (e.g. out.mp4)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--signaling", choices=["http", "websocket"], default="http")
    parser.add_argument("--ice-host", action="append", help="gather candidates on this address")
    parser.add_argument(
        "--relay-only",
        action="store_true",
        help="use relayed (TURN) candidates only, whatever the stream's configuration says",
    )
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
