"""G.711 mu-law against the ITU reference, for every input.

The references below are written out from the standard, one sample at a time and
as plainly as possible, independently of the module's vectorised tables:

- encoding follows ``ulaw_compress`` of ITU-T G.191's Software Tools Library
  (g711.c): the 16-bit sample's 14 most significant bits, negative samples by
  one's complement (``~x >> 2``), plus 33, limited to 0x1FFF; the segment is the
  position of the leading one; the code word's bits are inverted, bit 7 set for
  samples >= 0;
- decoding follows G.711's Table 2 (mu-law): code word ``s eee mmmm`` (after
  inverting its bits) decodes to ``((2 * mmmm + 33) << eee) - 33`` on the 14-bit
  scale (0 ... 8031), that is four times as much on the 16-bit scale.
"""

from __future__ import annotations

import numpy as np

from django_rtcstream.media import mulaw


def reference_encode(x: int) -> int:
    absno = ((~x) >> 2 if x < 0 else x >> 2) + 33
    absno = min(absno, 0x1FFF)
    segno, i = 1, absno >> 6
    while i:
        segno += 1
        i >>= 1
    high_nibble = 8 - segno
    low_nibble = 0x0F - ((absno >> segno) & 0x0F)
    code = (high_nibble << 4) | low_nibble
    return code | 0x80 if x >= 0 else code


def reference_decode(code: int) -> int:
    inverted = ~code & 0xFF
    exponent, mantissa = (inverted >> 4) & 0x07, inverted & 0x0F
    magnitude = ((2 * mantissa + 33) << exponent) - 33
    return 4 * (magnitude if code & 0x80 else -magnitude)


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_encoding_matches_g191_for_every_16_bit_sample():
    expected = bytes(reference_encode(int(x)) for x in ALL_SAMPLES)
    got = mulaw.encode(ALL_SAMPLES)
    mismatches = [int(x) for x, a, b in zip(ALL_SAMPLES, got, expected, strict=True) if a != b]
    assert not mismatches, f"{len(mismatches)} samples differ, first {mismatches[:5]}"


def test_decoding_matches_g711_table_2_for_every_code():
    codes = bytes(range(256))
    assert mulaw.decode(codes).tolist() == [reference_decode(c) for c in codes]
    # A few values straight from the table: zero (both signs), the smallest step, the peak.
    assert mulaw.decode(bytes([0xFF, 0x7F, 0xFE, 0x80, 0x00])).tolist() == [0, 0, 8, 32124, -32124]


def test_decoding_then_encoding_gives_the_code_back():
    codes = bytes(c for c in range(256) if c != 0x7F)  # -0 and +0 both decode to 0
    assert mulaw.encode(mulaw.decode(codes)) == codes


def test_other_integer_arrays_are_clipped_to_16_bits():
    wide = np.array([-70000, -32768, 0, 32767, 70000], dtype=np.int32)
    assert mulaw.encode(wide) == mulaw.encode(np.array([-32768, -32768, 0, 32767, 32767], np.int16))
    assert mulaw.encode(np.zeros(0, np.int16)) == b""
