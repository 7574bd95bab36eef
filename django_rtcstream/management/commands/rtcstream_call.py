"""``manage.py rtcstream_call <stream>``: call a stream as Twilio would, without a phone.

It posts the (signed) voice webhook, follows the TwiML to the Media Streams
WebSocket, plays a WAV file (or a tone) as the caller at real time, records
the answer to a WAV and prints the timing. To reach a real phone number
instead, point a Twilio number's voice webhook at
``https://<host><prefix>/<stream>/telephone/incoming`` (see the README).
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_rtcstream.conf import rtc_settings


class Command(BaseCommand):
    help = "Call a stream's telephone endpoint like Twilio does; record the answer."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("stream", help="the stream's name")
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/rtc/",
            help="the app's HTTP prefix on the running server",
        )
        parser.add_argument("--input", help="audio file the caller plays (default: a tone)")
        parser.add_argument("--tone", type=float, default=440.0, help="tone frequency, Hz")
        parser.add_argument("--seconds", type=float, default=3.0, help="tone length")
        parser.add_argument(
            "--listen",
            type=float,
            default=2.0,
            help="seconds to keep listening after the caller stops talking",
        )
        parser.add_argument(
            "--marks",
            type=int,
            default=1,
            help="then go quiet until this many replies ended (Twilio marks; "
            "at most 15 s); 0 hangs up at once",
        )
        parser.add_argument("--output", help="WAV file for what the stream answered")
        parser.add_argument(
            "--auth-token",
            default=None,
            help="Twilio auth token to sign with (default: TWILIO_AUTH_TOKEN)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django_rtcstream.telephone import caller

        audio = (
            caller.read_audio(options["input"])
            if options["input"]
            else caller.tone(options["tone"], options["seconds"])
        )
        if not len(audio):
            raise CommandError(f"{options['input']} holds no audio")
        url = options["url"].rstrip("/") + f"/{options['stream']}/telephone/incoming"
        token = options["auth_token"] or rtc_settings.TWILIO_AUTH_TOKEN
        try:
            result = asyncio.run(
                caller.place_call(
                    url,
                    audio,
                    auth_token=token,
                    listen=options["listen"],
                    until_marks=options["marks"],
                )
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise CommandError(f"The call failed: {exc}") from exc
        if options["output"]:
            caller.write_wav(options["output"], result.received)
        first = (
            f"{result.first_audio_after * 1000:.0f} ms"
            if result.first_audio_after is not None
            else "never"
        )
        self.stdout.write(f"call {result.call_sid} (stream {result.stream_sid})")
        self.stdout.write(
            f"sent {len(audio) / 8000:.2f} s, received {len(result.received) / 8000:.2f} s of audio"
        )
        self.stdout.write(f"first audio back after {first}; call lasted {result.duration:.2f} s")
        self.stdout.write(f"marks {result.marks}; clears {result.clears}")
