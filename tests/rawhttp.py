"""A small HTTP/1.1 client on asyncio streams, for tests that need many requests in
flight at once (``http_json`` runs each request in the loop's default executor, a
few threads), cookies and headers of their own, or many SSE readers in one loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _encode(
    method: str, url: str, body: Any, headers: dict[str, str] | None, keep_alive: bool
) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    else:
        data = body if isinstance(body, bytes) else (body or "").encode()
    lines = [
        f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Length: {len(data)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return (
        parts.hostname or "127.0.0.1",
        parts.port or 80,
        ("\r\n".join(lines) + "\r\n\r\n").encode() + data,
    )


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return b"".join([c async for c in _chunks(reader)])
    return await reader.read()


async def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Response:
    """One request on its own connection."""
    host, port, raw = _encode(method, url, body, headers, keep_alive=False)

    async def go() -> Response:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(raw)
            await writer.drain()
            status, head = await _read_head(reader)
            return Response(status, head, await _read_body(reader, head))
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


async def simultaneous(
    requests: list[tuple[str, str, Any, dict[str, str] | None]], timeout: float = 30.0
) -> list[Response]:
    """Send every ``(url, method, body, headers)`` at once: all connections are open
    before the first request is written, and all are written before any is read."""
    encoded = [
        _encode(method, url, body, headers, keep_alive=False)
        for url, method, body, headers in requests
    ]
    streams = await asyncio.gather(
        *[asyncio.open_connection(host, port) for host, port, _ in encoded]
    )
    for (_, writer), (_, _, raw) in zip(streams, encoded, strict=True):
        writer.write(raw)

    async def read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Response:
        try:
            await writer.drain()
            status, head = await _read_head(reader)
            return Response(status, head, await _read_body(reader, head))
        finally:
            writer.close()

    return await asyncio.wait_for(asyncio.gather(*[read(r, w) for r, w in streams]), timeout)


class Connection:
    """A keep-alive connection for many requests, one after another."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        host, port, raw = _encode(method, url, body, headers, keep_alive=True)
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(host, port)
        assert self.reader is not None
        self.writer.write(raw)
        await self.writer.drain()
        status, head = await _read_head(self.reader)
        response = Response(status, head, await _read_body(self.reader, head))
        if head.get("connection", "").lower() == "close":
            await self.close()
        return response

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


@dataclass
class SSE:
    """An open Server-Sent Events response; ``events()`` yields ``(event, data, id)``."""

    status: int
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    comments: list[str] = field(default_factory=list)

    async def events(self) -> AsyncIterator[tuple[str | None, Any, str | None]]:
        buffer = b""
        async for chunk in _chunks(self.reader):
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                event = data = event_id = None
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                if data is not None:
                    yield event, data, event_id

    def close(self) -> None:
        self.writer.close()


async def open_sse(
    url: str, headers: dict[str, str] | None = None, timeout: float = 15.0
) -> SSE | Response:
    """Open an SSE stream: an ``SSE`` on 200, else the refusal's ``Response``."""
    host, port, raw = _encode("GET", url, None, headers, keep_alive=False)

    async def go() -> SSE | Response:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(raw)
        await writer.drain()
        status, head = await _read_head(reader)
        if status != 200:
            try:
                return Response(status, head, await _read_body(reader, head))
            finally:
                writer.close()
        return SSE(status, head, reader, writer)

    return await asyncio.wait_for(go(), timeout)


async def input_posts(
    url: str, webrtc_id: str, token: str, values: list[float], workers: int
) -> list[tuple[float, int, Any]]:
    """POST each value to an input hook as ``level``, ``workers`` keep-alive connections
    at a time; ``(value, status, answered inputs or None)`` per post."""
    results: list[tuple[float, int, Any]] = []

    async def worker(share: list[float]) -> None:
        connection = Connection(url)
        try:
            for value in share:
                reply = await connection.request(
                    url,
                    "POST",
                    {"webrtc_id": webrtc_id, "level": value},
                    {"X-Session-Token": token},
                )
                try:
                    inputs = reply.json().get("inputs")
                except ValueError:
                    inputs = None
                results.append((value, reply.status, inputs))
        finally:
            await connection.close()

    await asyncio.gather(*[worker(values[k::workers]) for k in range(workers)])
    return results
