"""JSON from clients: ``json.loads`` whose every failure is a ``ValueError``.

Python's parser recurses once per nesting level, so ``[[[[...]]]]`` a few
thousand levels deep raises ``RecursionError``, which an ``except ValueError``
around ``json.loads`` lets through (a 500, or a WebSocket closed with 1011).
Everything that parses what a client sent goes through ``loads`` instead.
"""

from __future__ import annotations

import json
from typing import Any


class TooDeep(ValueError):
    """Raised when JSON is nested deeper than Python's parser can follow."""


def loads(raw: str | bytes | bytearray) -> Any:
    """``json.loads``, with too deep a nesting reported as ``TooDeep`` (a ``ValueError``)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise TooDeep("it is nested too deeply") from None
