"""Send mode: an async "speech-to-text" handler reporting AdditionalOutputs.

The model is a stand-in that names the loudest frequency in each second of
audio it hears.
"""

import asyncio

import numpy as np

from django_rtcstream import AdditionalOutputs, AsyncStreamHandler, Stream, wait_for_item
from django_rtcstream.utils import audio_to_float32

SAMPLE_RATE = 16000


def fake_stt(sample_rate, audio):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak = float(np.fft.rfftfreq(len(audio), 1 / sample_rate)[int(np.argmax(spectrum))])
    return f"{round(peak / 10) * 10} Hz"


class Transcriber(AsyncStreamHandler):
    def __init__(self) -> None:
        super().__init__(input_sample_rate=SAMPLE_RATE)
        self.buffer = []
        self.transcripts = asyncio.Queue()

    def copy(self):
        return Transcriber()

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        sample_rate, array = frame
        self.buffer.append(audio_to_float32(array.squeeze()))
        if sum(len(b) for b in self.buffer) >= sample_rate:
            audio, self.buffer = np.concatenate(self.buffer), []
            await self.transcripts.put(AdditionalOutputs(fake_stt(sample_rate, audio)))

    async def emit(self):
        return await wait_for_item(self.transcripts)


stream = Stream(handler=Transcriber(), modality="audio", mode="send")
