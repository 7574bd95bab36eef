"""Audio and queue helpers with FastRTC's names (``fastrtc.utils``).

``from django_rtcstream.utils import audio_to_bytes`` works where
``from fastrtc.utils import audio_to_bytes`` did. The conversions follow
FastRTC's dtype rules: int16 samples become float32 by dividing by 32768,
float32 samples become int16 by multiplying by 32767, and any other dtype is a
``TypeError``.

MP3 is encoded with PyAV's bundled libmp3lame, so neither pydub nor an
``ffmpeg`` binary is needed. PyAV is imported only when audio is encoded.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "aggregate_bytes_to_16bit",
    "async_aggregate_bytes_to_16bit",
    "audio_to_bytes",
    "audio_to_file",
    "audio_to_float32",
    "audio_to_int16",
    "wait_for_item",
]

AudioArray = NDArray[Any]
AudioTuple = tuple[int, AudioArray]
T = TypeVar("T")

# The sample rates libmp3lame accepts (MPEG-1, -2 and -2.5 layer III).
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


async def wait_for_item(queue: asyncio.Queue[T], timeout: float = 0.1) -> T | None:
    """Get the next item of ``queue``, or None if none arrives within ``timeout`` seconds.

    Meant for an async handler's ``emit()``: it returns None ("nothing yet")
    instead of blocking when the queue stays empty.
    """
    try:
        # An item that is already there is taken without starting a timed wait.
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    try:
        return await asyncio.wait_for(queue.get(), timeout=timeout)
    except TimeoutError:  # asyncio.wait_for raises the builtin one (Python 3.11+)
        return None


def _unpack(audio: AudioArray | AudioTuple, name: str) -> AudioArray:
    if isinstance(audio, tuple):
        warnings.warn(
            f"Passing a (sample_rate, audio) tuple to {name}() is deprecated (as in "
            "FastRTC); pass only the audio array.",
            UserWarning,
            stacklevel=3,
        )
        audio = audio[1]
    return audio


def audio_to_float32(audio: AudioArray | AudioTuple) -> NDArray[np.float32]:
    """Return ``audio`` as float32 samples in ``[-1.0, 1.0)``.

    Args:
        audio: an int16 or float32 array. A ``(sample_rate, array)`` tuple is
            still accepted, with a ``UserWarning``, as in FastRTC.

    Returns:
        int16 input divided by 32768; float32 input itself (not a copy).

    Raises:
        TypeError: for any other dtype.
    """
    audio = _unpack(audio, "audio_to_float32")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / np.float32(32768.0)
    if audio.dtype == np.float32:
        return audio
    raise TypeError(f"Unsupported audio data type: {audio.dtype}")


def audio_to_int16(audio: AudioArray | AudioTuple) -> NDArray[np.int16]:
    """Return ``audio`` as int16 samples.

    Args:
        audio: an int16 or float32 array. A ``(sample_rate, array)`` tuple is
            still accepted, with a ``UserWarning``, as in FastRTC.

    Returns:
        float32 input multiplied by 32767 (values outside ``[-1.0, 1.0]`` are
        clipped rather than wrapped around); int16 input itself (not a copy).

    Raises:
        TypeError: for any other dtype.
    """
    audio = _unpack(audio, "audio_to_int16")
    if audio.dtype == np.int16:
        return audio
    if audio.dtype == np.float32:
        return (np.clip(audio, -1.0, 1.0) * np.float32(32767.0)).astype(np.int16)
    raise TypeError(f"Unsupported audio data type: {audio.dtype}")


def _mp3_rate(sample_rate: int) -> int:
    """The lowest MP3 rate at or above ``sample_rate`` (48000 above that)."""
    for rate in MP3_SAMPLE_RATES:
        if rate >= sample_rate:
            return rate
    return MP3_SAMPLE_RATES[-1]


def audio_to_bytes(audio: AudioTuple) -> bytes:
    """Encode ``(sample_rate, array)`` as MP3 and return the file's bytes.

    The array is read as mono samples in order, whatever its shape (``(n,)``
    or ``(1, n)``), as FastRTC does. int16 samples are encoded as they are;
    floating-point samples are taken to lie in ``[-1.0, 1.0]``. A sample rate
    MP3 cannot carry (it has nine, 8000 to 48000 Hz) is resampled to the
    closest one above it; the duration is kept either way. The file is mono
    MP3 at 128 kbit/s whose LAME header records the encoder's delay and
    padding: decoders that read it (ffmpeg's, hence PyAV's) give back exactly
    the samples encoded.

    Raises:
        TypeError: if the samples are neither int16 nor floating point.
    """
    import av

    sample_rate, data = int(audio[0]), np.asarray(audio[1])
    if data.dtype == np.int16:
        samples, fmt = np.ascontiguousarray(data.reshape(1, -1)), "s16"
    elif np.issubdtype(data.dtype, np.floating):
        samples, fmt = np.ascontiguousarray(data.reshape(1, -1), dtype=np.float32), "flt"
    else:
        raise TypeError(f"Unsupported audio data type: {data.dtype}")

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=_mp3_rate(sample_rate), layout="mono")
        # ffmpeg's default, which FastRTC's pydub export got; at 8000-12000 Hz
        # libmp3lame lowers it to 64 kbit/s, the most those rates carry.
        stream.bit_rate = 128_000
        # Headers are written even for empty audio (the file is then headers only).
        container.start_encoding()
        if samples.shape[1]:
            frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
            frame.sample_rate = sample_rate
            # The codec context resamples to the stream's rate and cuts 1152-sample frames.
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def audio_to_file(audio: AudioTuple) -> str:
    """Write ``audio_to_bytes(audio)`` to a new ``.mp3`` temporary file and return its path.

    The file is not deleted: removing it is up to the caller.
    """
    data = audio_to_bytes(audio)
    with tempfile.NamedTemporaryFile(suffix=".mp3", delete=False) as f:
        f.write(data)
    return f.name


def _split(pending: bytes) -> tuple[NDArray[np.int16] | None, bytes]:
    whole = len(pending) - len(pending) % 2
    if not whole:
        return None, pending
    return np.frombuffer(pending[:whole], dtype=np.int16).reshape(1, -1), pending[whole:]


def aggregate_bytes_to_16bit(chunks_iterator: Iterable[bytes]) -> Iterator[NDArray[np.int16]]:
    """Turn a stream of raw 16-bit PCM byte chunks into int16 arrays of shape ``(1, n)``.

    A chunk may end in the middle of a sample: its odd byte is kept and put in
    front of the next chunk. One array is yielded per chunk that completes at
    least one sample; a last odd byte is dropped. Samples are read in the
    machine's native byte order, as FastRTC does.
    """
    pending = b""
    for chunk in chunks_iterator:
        array, pending = _split(pending + chunk)
        if array is not None:
            yield array


async def async_aggregate_bytes_to_16bit(
    chunks_iterator: AsyncIterable[bytes],
) -> AsyncIterator[NDArray[np.int16]]:
    """``aggregate_bytes_to_16bit`` for an async iterable of byte chunks."""
    pending = b""
    async for chunk in chunks_iterator:
        array, pending = _split(pending + chunk)
        if array is not None:
            yield array
