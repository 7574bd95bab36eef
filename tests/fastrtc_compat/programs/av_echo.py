"""Audio-video guide: an AudioVideoStreamHandler echoing audio and flipping video."""

from queue import Empty, Queue

import numpy as np

from django_rtcstream import AudioVideoStreamHandler, Stream


class AVEchoHandler(AudioVideoStreamHandler):
    def __init__(self) -> None:
        super().__init__(input_sample_rate=48000, output_sample_rate=48000)
        self.audio_queue = Queue()
        self.latest_frame = None

    def copy(self):
        return AVEchoHandler()

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        self.audio_queue.put(frame)

    def emit(self):
        try:
            return self.audio_queue.get_nowait()
        except Empty:
            return None

    def video_receive(self, frame: np.ndarray):
        self.latest_frame = frame

    def video_emit(self):
        if self.latest_frame is None:
            return np.zeros((240, 320, 3), dtype=np.uint8)
        return np.flip(self.latest_frame, axis=0)


stream = Stream(handler=AVEchoHandler(), modality="audio-video", mode="send-receive")
