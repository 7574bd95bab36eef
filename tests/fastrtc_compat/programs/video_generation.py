"""Video guide, "Server-to-Client Only": a generator reading a (stand-in) capture.

Like ``cv2.VideoCapture.read()``, the capture returns ``(ok, frame)`` and
``(False, None)`` at the end, and the loop yields that last None too.
"""

import numpy as np

from django_rtcstream import Stream

N_FRAMES = 90


class FakeCapture:
    """Frames of rising brightness: 20, 22, 24, ..."""

    def __init__(self, n_frames):
        self.n = n_frames
        self.i = 0

    def read(self):
        if self.i >= self.n:
            return False, None
        frame = np.full((240, 320, 3), 20 + 2 * self.i, dtype=np.uint8)
        self.i += 1
        return True, frame


def generation():
    cap = FakeCapture(N_FRAMES)
    iterating = True
    while iterating:
        iterating, frame = cap.read()
        yield frame


stream = Stream(
    handler=generation,
    modality="video",
    mode="receive",
)
