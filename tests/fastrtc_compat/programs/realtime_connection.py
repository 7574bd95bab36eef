"""An AsyncStreamHandler that keeps a model connection open in start_up().

Shaped like FastRTC's "Talk to OpenAI" demo: start_up() connects and reads
the server's events for the whole session, receive() forwards microphone
audio, emit() hands out what the server sent (wait_for_item), shutdown()
closes the connection. The "realtime API" is a stand-in speaking JSON lines
over TCP at $REALTIME_SERVER (host:port): audio in, audio deltas and
transcripts out.
"""

import asyncio
import base64
import json
import os

import numpy as np

from django_rtcstream import AdditionalOutputs, AsyncStreamHandler, Stream, wait_for_item

SAMPLE_RATE = 24000


class RealtimeHandler(AsyncStreamHandler):
    def __init__(self) -> None:
        super().__init__(
            expected_layout="mono",
            output_sample_rate=SAMPLE_RATE,
            input_sample_rate=SAMPLE_RATE,
        )
        self.connection = None
        self.output_queue = asyncio.Queue()

    def copy(self):
        return RealtimeHandler()

    async def start_up(self):
        """Connect to the realtime server; keep reading its events while the session lasts."""
        host, port = os.environ["REALTIME_SERVER"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        self.connection = writer
        async for line in reader:
            event = json.loads(line)
            if event["type"] == "response.audio.delta":
                audio = np.frombuffer(base64.b64decode(event["delta"]), dtype=np.int16)
                await self.output_queue.put((self.output_sample_rate, audio.reshape(1, -1)))
            elif event["type"] == "transcript.done":
                await self.output_queue.put(AdditionalOutputs(event["transcript"]))

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        if not self.connection:
            return
        _, array = frame
        message = {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(array.squeeze().tobytes()).decode(),
        }
        self.connection.write(json.dumps(message).encode() + b"\n")
        await self.connection.drain()

    async def emit(self):
        return await wait_for_item(self.output_queue)

    async def shutdown(self) -> None:
        if self.connection:
            self.connection.close()
            self.connection = None


stream = Stream(
    handler=RealtimeHandler(),
    modality="audio",
    mode="send-receive",
)
