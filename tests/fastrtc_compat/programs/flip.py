"""The quickstart's video flip: a plain function, no inputs."""

import numpy as np

from django_rtcstream import Stream


def flip(frame):
    return np.flip(frame, axis=0)


stream = Stream(flip, modality="video", mode="send-receive")
