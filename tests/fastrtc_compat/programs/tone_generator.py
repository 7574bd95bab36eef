"""A receive-mode audio generator with a Number and a Dropdown input.

It yields float32 chunks as ``(sample_rate, array, "mono")``, the three-item
form FastRTC's stop-word example yields.
"""

import gradio as gr
import numpy as np

from django_rtcstream import Stream

SAMPLE_RATE = 24000
CHUNK = SAMPLE_RATE // 50


def tone(frequency, wave):
    n = 0
    while True:
        t = (np.arange(CHUNK) + n) / SAMPLE_RATE
        n += CHUNK
        signal = np.sin(2 * np.pi * frequency * t)
        if wave == "square":
            signal = np.sign(signal)
        yield SAMPLE_RATE, (0.3 * signal).astype(np.float32).reshape(1, -1), "mono"


stream = Stream(
    handler=tone,
    modality="audio",
    mode="receive",
    additional_inputs=[
        gr.Number(value=440, label="Frequency"),
        gr.Dropdown(choices=["sine", "square"], value="sine", label="Wave"),
    ],
)
