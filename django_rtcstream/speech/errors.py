"""The one error the speech helpers raise when a model cannot be had."""

from __future__ import annotations

__all__ = ["SpeechModelUnavailable"]


class SpeechModelUnavailable(RuntimeError):
    """A speech-to-text or text-to-speech model that cannot be loaded here.

    Raised by ``get_stt_model`` / ``get_tts_model`` when the name is unknown,
    when the Python package or program behind it is not installed, or when a
    backend needs weights that were not given as a local ``model_path``
    (nothing is ever downloaded). The message says what to install or pass.
    """
