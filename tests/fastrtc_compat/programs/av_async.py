"""The "Gemini Audio Video Chat" shape: an AsyncAudioVideoStreamHandler with queues.

The model is a stand-in that answers with what it was sent: audio back as
it came, the webcam frame reflected back unchanged.
"""

import asyncio

import numpy as np

from django_rtcstream import AsyncAudioVideoStreamHandler, Stream, wait_for_item


class ReflectHandler(AsyncAudioVideoStreamHandler):
    def __init__(self) -> None:
        super().__init__("mono", output_sample_rate=24000, input_sample_rate=16000)
        self.audio_queue = asyncio.Queue()
        self.video_queue = asyncio.Queue()

    def copy(self) -> "ReflectHandler":
        return ReflectHandler()

    async def video_receive(self, frame: np.ndarray):
        self.video_queue.put_nowait(frame)

    async def video_emit(self):
        frame = await wait_for_item(self.video_queue, 0.01)
        if frame is not None:
            return frame
        else:
            return np.zeros((100, 100, 3), dtype=np.uint8)

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        sample_rate, array = frame
        self.audio_queue.put_nowait((sample_rate, array.squeeze()))

    async def emit(self):
        item = await wait_for_item(self.audio_queue, 0.01)
        if item is not None:
            return item
        return None


stream = Stream(
    handler=ReflectHandler(),
    modality="audio-video",
    mode="send-receive",
)
