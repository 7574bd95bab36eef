"""FAQ, "How to raise errors in the UI": a generator that ends by raising WebRTCError."""

import gradio as gr
import numpy as np

from django_rtcstream import Stream, WebRTCError

SAMPLE_RATE = 24000


def segment(seconds=0.3, frequency=330.0):
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (np.sin(2 * np.pi * frequency * t) * 0.4 * 32767).astype(np.int16)


def generation(num_steps):
    for _ in range(num_steps):
        yield (SAMPLE_RATE, segment().reshape(1, -1))
    raise WebRTCError("This is a test error")


stream = Stream(
    handler=generation,
    modality="audio",
    mode="receive",
    additional_inputs=[gr.Slider(label="Number of Steps", minimum=1, maximum=10, step=1, value=2)],
)
