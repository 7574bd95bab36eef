"""A receive-mode audio generator driven by an integer slider (the FAQ's shape).

``range(num_steps)`` raises TypeError for a float, so the slider's value must
reach the generator as an int, as Gradio delivers it.
"""

import gradio as gr
import numpy as np

from django_rtcstream import Stream

SAMPLE_RATE = 24000
CHUNK = SAMPLE_RATE // 10  # 100 ms
runs = []  # one dict per generator run: the value it got and the chunks it yielded


def beep(n_samples, start, frequency=440.0):
    t = (np.arange(n_samples) + start) / SAMPLE_RATE
    return (np.sin(2 * np.pi * frequency * t) * 0.5 * 32767).astype(np.int16).reshape(1, -1)


def generation(num_steps):
    run = {"num_steps": num_steps, "yielded": 0}
    runs.append(run)
    for step in range(num_steps):
        for i in range(10):  # each step is one second of tone
            yield SAMPLE_RATE, beep(CHUNK, (step * 10 + i) * CHUNK)
            run["yielded"] += 1


stream = Stream(
    handler=generation,
    modality="audio",
    mode="receive",
    additional_inputs=[gr.Slider(label="Number of Steps", minimum=1, maximum=10, step=1, value=2)],
)
