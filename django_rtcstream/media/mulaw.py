"""G.711 mu-law, bit-exact with ITU-T G.191's reference (``ulaw_compress`` and
``ulaw_expand`` of the ITU Software Tools Library's g711.c), in numpy.

The telephone network and FastRTC's WebSocket protocol carry 8-bit mu-law.

G.191 encodes the 14 most significant bits of a 16-bit sample and takes the
magnitude of a negative sample by one's complement (``~x >> 2``, which is
``(-x - 1) >> 2``), not by negation. Python's old ``audioop.lin2ulaw`` negates
(``-(x >> 2)``), so for 508 of the 65,536 inputs, all negative, its code word is
one step away from G.191's; this module follows G.191. Decoding gives G.711's
Table 2 values, scaled to 16 bits.

Both directions are lookup tables built once at import (64 KiB and 512 bytes), so a
frame costs one numpy indexing operation.
"""

from __future__ import annotations

import numpy as np

_BIAS = 33  # G.191's offset between the A-law and mu-law thresholds, on the 14-bit scale
_CLIP = 0x1FFF  # largest biased magnitude: 13 bits
# The largest biased magnitude of each of the eight segments (chords).
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _encode_table() -> np.ndarray:
    """The code word of every int16 sample, indexed by the sample's bits as uint16."""
    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    magnitude = np.where(x < 0, ~x, x) >> 2  # 14 bits; one's complement for negatives
    biased = np.minimum(magnitude + _BIAS, _CLIP)
    segment = np.searchsorted(_SEGMENT_ENDS, biased)  # the first end >= biased
    mantissa = (biased >> (segment + 1)) & 0x0F
    code = ~((segment << 4) | mantissa) & 0x7F  # G.711 transmits the bits inverted
    return np.asarray(np.where(x >= 0, code | 0x80, code), dtype=np.uint8)


def _decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    # G.711 Table 2: ((2m + 33) << e) - 33 on the 14-bit scale; x4 for 16 bits.
    magnitude = ((((mantissa << 1) + _BIAS) << exponent) - _BIAS) << 2
    return np.where(sign, -magnitude, magnitude).astype(np.int16)


_ENCODE = _encode_table()
_DECODE = _decode_table()


def decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> int16 samples."""
    return _DECODE.take(np.frombuffer(data, dtype=np.uint8))  # take: cheaper than [idx]


def encode(samples: np.ndarray) -> bytes:
    """int16 samples -> mu-law bytes; other numeric arrays are first clipped to int16."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        x = np.clip(x, -32768, 32767).astype(np.int16)
    return _ENCODE.take(x.view(np.uint16)).tobytes()
