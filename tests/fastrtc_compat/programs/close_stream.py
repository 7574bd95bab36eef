"""A StreamHandler that ends the stream itself with CloseStream after a second of audio."""

from queue import Empty, Queue

import numpy as np

from django_rtcstream import CloseStream, Stream, StreamHandler


class EchoThenGoodbye(StreamHandler):
    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.queue = Queue()
        self.frames = 0

    def copy(self):
        return EchoThenGoodbye()

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        self.frames += 1
        self.queue.put(frame)

    def emit(self):
        if self.frames >= 50:  # one second of 20 ms frames
            return CloseStream("Goodbye")
        try:
            return self.queue.get(timeout=0.05)
        except Empty:
            return None


stream = Stream(EchoThenGoodbye(), modality="audio", mode="send-receive")
