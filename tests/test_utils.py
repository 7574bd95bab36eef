"""The FastRTC-named helpers of django_rtcstream.utils: queue waits, dtype conversions, MP3, PCM."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

import django_rtcstream
from django_rtcstream.utils import (
    aggregate_bytes_to_16bit,
    async_aggregate_bytes_to_16bit,
    audio_to_bytes,
    audio_to_file,
    audio_to_float32,
    audio_to_int16,
    wait_for_item,
)

ROOT = Path(__file__).resolve().parent.parent


def tone(sample_rate: int, seconds: float, dtype=np.int16) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return (wave * 32767).astype(np.int16) if dtype == np.int16 else wave


def decode(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, float32 mono samples) of an encoded file, decoded by PyAV."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert container.format.name == "mp3" and stream.codec.id == av.Codec("mp3").id
        rate = stream.rate
        frames = [f.to_ndarray().astype(np.float32).reshape(-1) for f in container.decode(stream)]
    return rate, np.concatenate(frames)


# wait_for_item


async def test_wait_for_item_returns_none_after_the_timeout():
    queue: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await wait_for_item(queue, timeout=0.05) is None
    assert loop.time() - start >= 0.04


async def test_wait_for_item_returns_an_item_put_while_waiting():
    queue: asyncio.Queue[str] = asyncio.Queue()
    asyncio.get_running_loop().call_later(0.02, queue.put_nowait, "late")
    assert await wait_for_item(queue, timeout=2) == "late"
    assert queue.empty()


async def test_wait_for_item_takes_a_waiting_item_in_order_and_leaves_the_rest():
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(3):
        queue.put_nowait(i)
    assert [await wait_for_item(queue, timeout=0) for _ in range(4)] == [0, 1, 2, None]


async def test_a_timed_out_wait_loses_no_item():
    queue: asyncio.Queue[int] = asyncio.Queue()
    assert await wait_for_item(queue) is None
    queue.put_nowait(7)
    assert await wait_for_item(queue) == 7


# audio_to_float32 / audio_to_int16 (FastRTC's rules)


def test_int16_to_float32_divides_by_32768():
    out = audio_to_float32(np.array([-32768, 0, 16384, 32767], dtype=np.int16))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([-1.0, 0.0, 0.5, 32767 / 32768], np.float32))


def test_float32_to_float32_is_the_same_array():
    audio = np.array([0.25, -0.5], dtype=np.float32)
    assert audio_to_float32(audio) is audio


def test_float32_to_int16_multiplies_by_32767_and_clips():
    out = audio_to_int16(np.array([-1.0, 0.0, 0.5, 1.0, 1.5, -2.0], dtype=np.float32))
    assert out.dtype == np.int16
    assert out.tolist() == [-32767, 0, 16383, 32767, 32767, -32767]


def test_int16_to_int16_is_the_same_array():
    audio = np.array([[1, -2, 3]], dtype=np.int16)
    assert audio_to_int16(audio) is audio


def test_conversions_keep_shape_and_handle_empty_arrays():
    assert audio_to_float32(np.zeros((1, 5), np.int16)).shape == (1, 5)
    assert audio_to_int16(np.zeros((1, 5), np.float32)).shape == (1, 5)
    assert audio_to_float32(np.array([], np.int16)).dtype == np.float32
    assert audio_to_int16(np.array([], np.float32)).dtype == np.int16


@pytest.mark.parametrize("dtype", [np.int32, np.float64, np.uint8])
@pytest.mark.parametrize("convert", [audio_to_float32, audio_to_int16])
def test_other_dtypes_are_a_type_error(convert, dtype):
    with pytest.raises(TypeError, match="Unsupported audio data type"):
        convert(np.zeros(3, dtype=dtype))


@pytest.mark.parametrize("convert", [audio_to_float32, audio_to_int16])
def test_a_tuple_is_accepted_with_a_deprecation_warning(convert):
    with pytest.warns(UserWarning, match=rf"{convert.__name__}\(\) is deprecated") as record:
        out = convert((16000, np.array([0.5], np.float32)))
    assert record[0].filename == __file__  # the warning points at the caller
    assert out.dtype == (np.float32 if convert is audio_to_float32 else np.int16)


# audio_to_bytes / audio_to_file


@pytest.mark.parametrize("sample_rate", [8000, 16000, 24000, 48000])
def test_audio_to_bytes_is_mp3_of_the_same_duration(sample_rate):
    audio = tone(sample_rate, 0.75)
    rate, decoded = decode(audio_to_bytes((sample_rate, audio.reshape(1, -1))))
    assert rate == sample_rate
    assert len(decoded) == len(audio)  # the LAME header's delay/padding is honoured
    # The decoded tone is the same tone: strongly correlated, about the same level.
    original = audio_to_float32(audio)
    assert np.corrcoef(original, decoded)[0, 1] > 0.95
    assert abs(np.sqrt(np.mean(decoded**2)) - np.sqrt(np.mean(original**2))) < 0.05


def test_float32_audio_is_encoded_as_samples_in_minus_one_to_one():
    audio = tone(24000, 0.5, dtype=np.float32)
    _rate, decoded = decode(audio_to_bytes((24000, audio)))
    assert np.corrcoef(audio, decoded)[0, 1] > 0.95
    assert 0.4 < np.abs(decoded).max() < 0.6


@pytest.mark.parametrize(
    ("sample_rate", "mp3_rate"), [(44000, 44100), (96000, 48000), (6000, 8000)]
)
def test_rates_mp3_cannot_carry_are_resampled_keeping_the_duration(sample_rate, mp3_rate):
    rate, decoded = decode(audio_to_bytes((sample_rate, tone(sample_rate, 0.5))))
    assert rate == mp3_rate
    assert abs(len(decoded) / rate - 0.5) < 0.01


def test_empty_audio_gives_headers_only():
    data = audio_to_bytes((16000, np.zeros((1, 0), np.int16)))
    assert data.startswith(b"ID3")
    assert len(data) < 2000


def test_audio_to_bytes_rejects_integer_samples_other_than_int16():
    with pytest.raises(TypeError, match="Unsupported audio data type"):
        audio_to_bytes((16000, np.zeros(100, np.int32)))


def test_audio_to_file_writes_a_kept_mp3_file():
    audio = tone(16000, 0.25)
    path = audio_to_file((16000, audio))
    try:
        assert path.endswith(".mp3")
        data = Path(path).read_bytes()
        assert data == audio_to_bytes((16000, audio))
        assert len(decode(data)[1]) == len(audio)
    finally:
        os.unlink(path)


# aggregate_bytes_to_16bit / async_aggregate_bytes_to_16bit


SAMPLES = np.array([1, -2, 300, -32768, 32767, 12345, -1], dtype=np.int16)
PCM = SAMPLES.tobytes()  # 14 bytes
CHUNKS = [PCM[:3], PCM[3:4], PCM[4:9], b"", PCM[9:14]]  # sizes 3, 1, 5, 0, 5


def test_aggregate_carries_the_odd_byte_into_the_next_chunk():
    arrays = list(aggregate_bytes_to_16bit(iter(CHUNKS)))
    assert [a.shape for a in arrays] == [(1, 1), (1, 1), (1, 2), (1, 3)]
    assert all(a.dtype == np.int16 for a in arrays)
    np.testing.assert_array_equal(np.concatenate(arrays, axis=1)[0], SAMPLES)


def test_aggregate_drops_a_last_odd_byte_and_yields_nothing_for_no_samples():
    assert [a.tolist() for a in aggregate_bytes_to_16bit([PCM[:2] + b"\x05"])] == [[[1]]]
    assert list(aggregate_bytes_to_16bit([b"\x01"])) == []
    assert list(aggregate_bytes_to_16bit([])) == []


async def test_async_aggregate_matches_the_sync_version():
    async def chunks():
        for chunk in CHUNKS:
            await asyncio.sleep(0)
            yield chunk

    arrays = [a async for a in async_aggregate_bytes_to_16bit(chunks())]
    expected = list(aggregate_bytes_to_16bit(CHUNKS))
    assert len(arrays) == len(expected)
    for got, want in zip(arrays, expected, strict=True):
        np.testing.assert_array_equal(got, want)


# Top-level exports


HELPERS = [
    "wait_for_item",
    "audio_to_bytes",
    "audio_to_file",
    "audio_to_float32",
    "audio_to_int16",
    "aggregate_bytes_to_16bit",
    "async_aggregate_bytes_to_16bit",
    "get_cloudflare_turn_credentials",
    "get_cloudflare_turn_credentials_async",
    "get_hf_turn_credentials",
    "get_hf_turn_credentials_async",
    "get_twilio_turn_credentials",
    "get_turn_credentials",
    "get_turn_credentials_async",
    "TurnCredentialsError",
]


def test_importing_the_package_stays_free_and_the_helpers_resolve_lazily():
    script = (
        "import json, sys\n"
        "import django_rtcstream\n"
        "heavy = [m for m in ('numpy', 'av', 'aiortc', 'django_rtcstream.utils',\n"
        "         'django_rtcstream.credentials') if m in sys.modules]\n"
        f"names = {HELPERS!r}\n"
        "found = {n: getattr(django_rtcstream, n).__module__ for n in names}\n"
        "print(json.dumps([heavy, found, 'av' in sys.modules]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    heavy, found, av_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == []
    assert set(found.values()) == {"django_rtcstream.utils", "django_rtcstream.credentials"}
    assert set(HELPERS) <= set(django_rtcstream.__all__)
    assert django_rtcstream.audio_to_bytes is audio_to_bytes
    assert not av_loaded  # PyAV waits until audio is actually encoded
