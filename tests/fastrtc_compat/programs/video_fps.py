"""Video guide, "Setting the Output Frame Rate": VideoStreamHandler(fps=...) plus an FPS output.

The capture is a stand-in for a live camera (it never ends).
"""

import time

import gradio as gr
import numpy as np

from django_rtcstream import AdditionalOutputs, Stream, VideoStreamHandler


class LiveCapture:
    def read(self):
        return True, np.full((240, 320, 3), 128, dtype=np.uint8)


def generation():
    cap = LiveCapture()
    iterating = True

    frame_count = 0
    start_time = time.time()
    fps = 0

    while iterating:
        iterating, frame = cap.read()

        frame_count += 1
        elapsed_time = time.time() - start_time
        if elapsed_time >= 1.0:
            fps = frame_count / elapsed_time
            yield frame, AdditionalOutputs(fps)
            frame_count = 0
            start_time = time.time()
        else:
            yield frame


stream = Stream(
    handler=VideoStreamHandler(generation, fps=20),
    modality="video",
    mode="receive",
    additional_outputs=[gr.Number(label="FPS")],
    additional_outputs_handler=lambda prev, cur: cur,
)
