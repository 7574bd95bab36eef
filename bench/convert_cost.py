"""What converting media between handlers and aiortc costs per frame (media/convert.py).

    .venv/bin/python bench/convert_cost.py [--frames 600] [--rounds 5]

Times, in this process and interleaved round by round, the conversions a session
makes on every frame, against the general PyAV call each replaced:

- a video handler's 640x480 bgr24 array -> yuv420p frame: ``array_to_video`` (a
  reformatter kept per thread, converting on one thread) against
  ``VideoFrame.from_ndarray(...).reformat(...)`` (a libswscale context for every
  frame, spread over PyAV 17's default slice threads);
- a decoded yuv420p frame -> the bgr24 array a handler receives: ``video_to_array``
  (one thread) against ``VideoFrame.to_ndarray(format=...)`` (slice threads);
- an Opus-decoded 20 ms stereo frame -> the mono array a handler receives:
  ``AudioInput.convert`` (a numpy downmix) against ``av.AudioResampler``.

Prints the median wall and CPU microseconds per frame of each and the CPU per
session-second (30 video frames, 50 audio frames a second).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
from av import VideoFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django_rtcstream.media.convert import AudioInput, array_to_video, video_to_array


def per_frame(fn, frames: int) -> tuple[float, float]:
    """Wall and CPU microseconds per call. CPU counts every thread of the process, so
    a conversion that spreads over libswscale's slice threads is charged for all of
    them: that is what it takes from the sessions beside it."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(frames):
        fn()
    return (
        (time.perf_counter() - wall) / frames * 1e6,
        (time.process_time() - cpu) / frames * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    decoded = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
    stereo = av.AudioFrame(format="s16", layout="stereo", samples=960)
    stereo.sample_rate = 48000
    stereo.planes[0].update(rng.integers(-3000, 3000, 1920).astype(np.int16).tobytes())
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    audio_input = AudioInput(48000, "mono")

    cases = {
        "video out: array_to_video (one thread, kept)": (
            lambda: array_to_video(image, "bgr24"),
            30,
        ),
        "video out: from_ndarray().reformat() (before)": (
            lambda: VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p"),
            30,
        ),
        "video in: video_to_array (one thread)": (
            lambda: video_to_array(decoded, "bgr24"),
            30,
        ),
        "video in: to_ndarray() (before)": (
            lambda: decoded.to_ndarray(format="bgr24"),
            30,
        ),
        "audio: AudioInput.convert (numpy downmix)": (
            lambda: audio_input.convert(stereo),
            50,
        ),
        "audio: AudioResampler.resample() (before)": (
            lambda: [f.to_ndarray() for f in resampler.resample(stereo)],
            50,
        ),
    }
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (fn, _rate) in cases.items():
            wall, cpu = per_frame(fn, args.frames)
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(f"{'conversion':<45} {'wall us':>8} {'CPU us':>8} {'CPU ms per session-s':>21}")
    for name, (_fn, rate) in cases.items():
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:<45} {wall:8.1f} {cpu:8.1f} {cpu * rate / 1000:21.2f}")


if __name__ == "__main__":
    main()
