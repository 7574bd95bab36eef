"""Core Concepts: the first example, a vertical flip with a slider it ignores."""

import gradio as gr
import numpy as np

from django_rtcstream import Stream

sliders_seen = []  # the slider values the handler was called with


def detection(image, slider):
    sliders_seen.append(slider)
    return np.flip(image, axis=0)


stream = Stream(
    handler=detection,
    modality="video",
    mode="send-receive",
    additional_inputs=[gr.Slider(minimum=0, maximum=1, step=0.01, value=0.3)],
    additional_outputs=None,
    additional_outputs_handler=None,
)
