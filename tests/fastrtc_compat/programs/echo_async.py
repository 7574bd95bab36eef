"""Audio guide, "Async Stream Handlers": an asyncio.Queue echo with wait_for_item."""

import asyncio

import numpy as np

from django_rtcstream import AsyncStreamHandler, Stream, wait_for_item


class AsyncEchoHandler(AsyncStreamHandler):
    """Simple Async Echo Handler"""

    def __init__(self) -> None:
        super().__init__(input_sample_rate=24000)
        self.queue = asyncio.Queue()

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        await self.queue.put(frame)

    async def emit(self) -> None:
        return await wait_for_item(self.queue)

    def copy(self):
        return AsyncEchoHandler()

    async def shutdown(self):
        pass

    async def start_up(self) -> None:
        pass


stream = Stream(AsyncEchoHandler(), modality="audio", mode="send-receive")
