"""Video guide, "Skipping Frames": a 200 ms function wrapped with skip_frames=True."""

import time

import numpy as np

from django_rtcstream import Stream, VideoStreamHandler

calls = []  # one entry per call


def process_image(image):
    calls.append(time.monotonic())
    time.sleep(0.2)  # 200 ms per frame; input arrives at 30 fps
    return np.flip(image, axis=0)


stream = Stream(
    handler=VideoStreamHandler(process_image, skip_frames=True),
    modality="video",
    mode="send-receive",
)
