"""Audio guide, "Stream Handler": the echo whose emit() blocks on queue.get()."""

from queue import Queue

import numpy as np

from django_rtcstream import Stream, StreamHandler, get_current_context

closed_sessions = []  # webrtc_ids whose shutdown() ran


class EchoHandler(StreamHandler):
    def __init__(self) -> None:
        super().__init__()
        self.queue = Queue()

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        self.queue.put(frame)

    def emit(self) -> None:
        return self.queue.get()

    def copy(self) -> StreamHandler:
        return EchoHandler()

    def shutdown(self) -> None:
        closed_sessions.append(get_current_context().webrtc_id)

    def start_up(self) -> None:
        pass


stream = Stream(
    handler=EchoHandler(),
    modality="audio",
    mode="send-receive",
)
