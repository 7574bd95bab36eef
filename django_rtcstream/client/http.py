"""The client's JSON over HTTP (stdlib only, so the client needs no HTTP library) and
what a refused request raises."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any


class SignalingFailed(Exception):
    """The server refused the offer; ``code`` is its ``meta.error`` (e.g. ``concurrency_limit_reached``)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        meta = body.get("meta") or {}
        self.code = meta.get("error", "unknown")
        super().__init__(f"{status} {self.code}: {meta.get('message', '')}")


def _http_json(
    url: str, data: dict[str, Any] | None = None, timeout: float = 30
) -> tuple[int, Any]:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(
        url,
        data=body,
        method="POST" if body else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {
                "status": "failed",
                "meta": {"error": "http_error", "message": raw[:200].decode(errors="replace")},
            }


async def http_json(url: str, data: dict[str, Any] | None = None) -> tuple[int, Any]:
    """JSON over HTTP without blocking the loop (stdlib only)."""
    return await asyncio.to_thread(_http_json, url, data)
