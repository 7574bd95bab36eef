"""Core Concepts, "Additional Outputs": a detector with a confidence slider.

The model is a stand-in: the frame is cut into eight horizontal bands and a
band whose brightness (0-1) is above the threshold counts as an object; the
processed frame paints detected bands green.
"""

import gradio as gr

from django_rtcstream import AdditionalOutputs, Stream

BANDS = 8


def process_frame(image, conf_threshold):
    out = image.copy()
    n_objects = 0
    height = image.shape[0] // BANDS
    for band in range(BANDS):
        rows = slice(band * height, (band + 1) * height)
        if image[rows].mean() / 255 > conf_threshold:
            out[rows] = (0, 255, 0)  # BGR: a green "box"
            n_objects += 1
    return out, n_objects


def detection(image, conf_threshold=0.3):
    processed_frame, n_objects = process_frame(image, conf_threshold)
    return processed_frame, AdditionalOutputs(n_objects)


stream = Stream(
    handler=detection,
    modality="video",
    mode="send-receive",
    additional_inputs=[
        gr.Slider(label="Confidence Threshold", minimum=0, maximum=1, step=0.01, value=0.3)
    ],
    additional_outputs=[gr.Number()],
    additional_outputs_handler=lambda component, n_objects: n_objects,
)
