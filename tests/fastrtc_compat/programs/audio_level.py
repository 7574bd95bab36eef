"""An echo that also reports its input level: AdditionalOutputs from audio, with fastrtc.utils."""

from queue import Empty, Queue

import gradio as gr
import numpy as np

from django_rtcstream import AdditionalOutputs, Stream, StreamHandler
from django_rtcstream.utils import audio_to_float32, audio_to_int16


class LevelEcho(StreamHandler):
    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue = Queue()
        self.count = 0

    def copy(self):
        return LevelEcho()

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        sample_rate, array = frame
        self.queue.put((sample_rate, audio_to_float32(array)))

    def emit(self):
        try:
            sample_rate, audio = self.queue.get(timeout=0.05)
        except Empty:
            return None
        self.count += 1
        out = (sample_rate, audio_to_int16(audio))
        if self.count % 25 == 0:
            rms = float(np.sqrt(np.mean(audio**2)))
            return out, AdditionalOutputs(round(rms, 3))
        return out


stream = Stream(
    handler=LevelEcho(),
    modality="audio",
    mode="send-receive",
    additional_outputs=[gr.Number(label="Level")],
    additional_outputs_handler=lambda previous, level: level,
)
