"""media/convert.py's shortcuts give exactly what PyAV's general paths give.

The Opus decoder's stereo is downmixed to the mono handlers want in numpy, and the
handlers' video arrays are converted to yuv420p with a reformatter kept per thread;
both replace a more general PyAV call on every frame (bench/README.md has the cost).
Video conversions run on their calling thread, so a kept reformatter keeps no
libswscale slice threads alive.
"""

from __future__ import annotations

import threading

import av
import numpy as np
import pytest
from av import VideoFrame

from django_rtcstream.media.convert import AudioInput, array_to_video, video_to_array


def stereo_frame(samples: np.ndarray, rate: int = 48000) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo", samples=len(samples) // 2)
    frame.sample_rate = rate
    frame.planes[0].update(samples.astype(np.int16).tobytes())
    return frame


def swresample_mono(frame: av.AudioFrame) -> np.ndarray:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=frame.sample_rate)
    return np.concatenate([f.to_ndarray() for f in resampler.resample(frame)], axis=1)


@pytest.mark.parametrize(
    "samples",
    [
        np.random.default_rng(1).integers(-32768, 32768, 1920),
        np.full(1920, 32767),
        np.full(1920, -32768),
        np.tile([32767, -32768], 480),
        np.tile([1, 0, -1, 0, 3, -4], 160),  # odd sums: the halves' rounding
    ],
    ids=["noise", "max", "min", "opposite", "halves"],
)
def test_the_stereo_downmix_equals_libswresample_sample_for_sample(samples):
    frame = stereo_frame(samples)
    [(rate, mono)] = AudioInput(48000, "mono").convert(frame)
    expected = swresample_mono(stereo_frame(samples))
    assert rate == 48000 and mono.dtype == np.int16
    assert mono.shape == expected.shape == (1, len(samples) // 2)
    assert np.array_equal(mono, expected)


def test_other_conversions_still_go_through_the_resampler():
    frame = stereo_frame(np.random.default_rng(2).integers(-1000, 1000, 1920))
    chunks = AudioInput(16000, "mono").convert(frame)
    assert all(rate == 16000 and a.shape[0] == 1 for rate, a in chunks)


def _reference(array: np.ndarray) -> VideoFrame:
    return VideoFrame.from_ndarray(array, format="bgr24").reformat(format="yuv420p")


def test_video_arrays_convert_like_frame_reformat_on_many_threads_and_sizes():
    rng = np.random.default_rng(3)
    arrays = [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for h, w in [(480, 640), (240, 320), (480, 640), (120, 160)]
    ]
    failures: list[str] = []

    def convert_all(offset: int) -> None:
        for i in range(12):
            array = arrays[(i + offset) % len(arrays)]
            got, want = array_to_video(array, "bgr24"), _reference(array)
            if (got.width, got.height, got.format.name) != (want.width, want.height, "yuv420p"):
                failures.append(f"shape {got.width}x{got.height} {got.format.name}")
            elif any(bytes(a) != bytes(b) for a, b in zip(got.planes, want.planes, strict=True)):
                failures.append(f"planes differ at {array.shape}")

    threads = [threading.Thread(target=convert_all, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


def test_a_thread_that_keeps_converting_video_starts_no_native_threads():
    # A pool thread keeps its reformatter for good; with PyAV's default each one would
    # keep a pool of libswscale slice threads too (the leak tests/test_leaks.py found).
    psutil = pytest.importorskip("psutil")
    process = psutil.Process()
    array = np.random.default_rng(4).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    decoded = _reference(array)

    def native_threads() -> int:
        return process.num_threads() - threading.active_count()

    converted, release = threading.Event(), threading.Event()
    during: list[int] = []

    def convert_and_stay() -> None:
        for _ in range(3):
            array_to_video(array, "bgr24")
            video_to_array(decoded, "bgr24")
        during.append(native_threads())
        converted.set()
        release.wait(30)

    before = native_threads()
    thread = threading.Thread(target=convert_and_stay)
    thread.start()
    try:
        assert converted.wait(30)
        assert during == [before]
    finally:
        release.set()
        thread.join(30)


@pytest.mark.parametrize("samples", [1, 7, 160, 960, 961, 4001])
def test_socket_samples_become_frames_and_handler_arrays_unchanged(samples):
    # Socket audio is put in frames (SocketAudioIn) and read back by AudioInput, both by
    # shortcuts of PyAV's from_ndarray / to_ndarray: nothing of the samples may change.
    from django_rtcstream.media.socket_audio import _mono_frame

    sent = np.random.default_rng(samples).integers(-32768, 32768, samples, dtype=np.int16)
    frame = _mono_frame(sent)
    frame.sample_rate = 16000
    assert np.array_equal(frame.to_ndarray()[0], sent)
    ((rate, got),) = AudioInput(16000, "mono").convert(frame)
    assert rate == 16000 and got.shape == (1, samples) and got.dtype == np.int16
    assert np.array_equal(got[0], sent)
    got[0, 0] = 1  # the handler's array is its own, writable
