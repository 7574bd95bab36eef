"""G.711 mu-law, in numpy (``audioop`` is deprecated and gone from Python 3.13).

The telephone network and FastRTC's WebSocket protocol carry 8-bit mu-law.
"""

from __future__ import annotations

import numpy as np

_BIAS = 0x84


def _decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign, -magnitude, magnitude).astype(np.int16)


_DECODE = _decode_table()


def decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> int16 samples."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def encode(samples: np.ndarray) -> bytes:
    """int16 samples -> mu-law bytes (the ITU reference's 14-bit segment search)."""
    x = np.asarray(samples, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.minimum(np.abs(x), 8159) + 0x21
    segment = np.searchsorted(_SEGMENT_ENDS, x)  # first end >= x
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((x >> (segment + 1)) & 0x0F))
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()


_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
