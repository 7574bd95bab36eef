"""Audio guide, "Requesting Inputs": an AsyncStreamHandler that waits for its inputs.

start_up() asks the client for the inputs (``await self.wait_for_args()``)
before it starts answering, as the "Talk to Gemini" demo does; emit() reads
the current volume from ``self.latest_args`` (index 0 is the placeholder).
"""

import asyncio

import gradio as gr
import numpy as np

from django_rtcstream import AsyncStreamHandler, Stream, wait_for_item


class VolumeEcho(AsyncStreamHandler):
    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue = asyncio.Queue()
        self.ready = False

    def copy(self):
        return VolumeEcho()

    async def start_up(self):
        if not self.phone_mode:
            await self.wait_for_args()
        self.ready = True

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        if self.ready:
            await self.queue.put(frame)

    async def emit(self):
        item = await wait_for_item(self.queue)
        if item is None:
            return None
        sample_rate, audio = item
        volume = self.latest_args[1]
        return sample_rate, (audio.astype(np.float32) * volume).astype(np.int16)


stream = Stream(
    handler=VolumeEcho(),
    modality="audio",
    mode="send-receive",
    additional_inputs=[gr.Slider(label="Volume", minimum=0, maximum=1, step=0.05, value=1)],
)
