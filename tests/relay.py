"""A jittery, lossy UDP link on loopback, for putting a bad network between two aiortc peers.

``JitteryRelay()`` has two loopback sockets: what reaches ``front`` goes to
the server (``server``), what reaches ``back`` goes to the client
(``client``), each datagram delayed by a random 0..``max_delay`` seconds (so
packets overtake each other: reordering; ``reorder=False`` keeps each
direction in order, a delayed packet holding back the ones behind it) and
dropped with probability ``loss``. Rewrite the offer's candidates to ``back_port`` and the answer's to
``front_port`` (``via_relay``): neither peer learns the other's real address,
so every packet, both ways, crosses the bad link.
"""

from __future__ import annotations

import asyncio
import random
import re


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: JitteryRelay, name: str) -> None:
        self.relay, self.name = relay, name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        self.relay.forward(self.name, data, addr)


class JitteryRelay:
    def __init__(
        self, *, max_delay: float = 0.04, loss: float = 0.01, seed: int = 1, reorder: bool = True
    ) -> None:
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.max_delay, self.loss, self.reorder = max_delay, loss, reorder
        self._last_due = {"front": 0.0, "back": 0.0}
        self.random = random.Random(seed)
        self.forwarded = self.dropped = 0
        self.counts = {"front": 0, "back": 0}
        self._pending: list[asyncio.TimerHandle] = []  # cancelled on close (a test's worth)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.front, self._front = await loop.create_datagram_endpoint(
            lambda: _Side(self, "front"), local_addr=("127.0.0.1", 0)
        )
        self.back, self._back = await loop.create_datagram_endpoint(
            lambda: _Side(self, "back"), local_addr=("127.0.0.1", 0)
        )
        self.front_port = self.front.get_extra_info("sockname")[1]
        self.back_port = self.back.get_extra_info("sockname")[1]
        return self.front_port

    def forward(self, side: str, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        self.counts[side] += 1
        # The front faces the client and forwards to the server from the back socket;
        # the back faces the server and forwards to the client from the front socket.
        out, dest = (self.back, self.server) if side == "front" else (self.front, self.client)
        if dest is None:
            return
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1
        loop = asyncio.get_running_loop()
        due = loop.time() + self.random.uniform(0, self.max_delay)
        if not self.reorder:
            due = self._last_due[side] = max(due, self._last_due[side])
        handle = loop.call_at(due, self._send, out, data, dest)
        self._pending.append(handle)
        if len(self._pending) > 1000:
            self._pending = [
                h for h in self._pending if not h.cancelled() and h.when() > loop.time()
            ]

    def _send(self, out, data: bytes, dest) -> None:  # type: ignore[no-untyped-def]
        if not out.is_closing():
            out.sendto(data, dest)

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self.front.close()
        self.back.close()


def host_candidate(sdp: str) -> tuple[str, int]:
    match = re.search(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", sdp, re.I)
    if not match:
        raise ValueError("the description has no UDP host candidate")
    return match.group(1), int(match.group(2))


def via_relay(sdp: str, port: int) -> str:
    """Keep one host candidate in a description, pointing at the relay's ``port``."""
    lines, kept = [], False
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            if kept or " typ host" not in line:
                continue
            bits = line.split()
            bits[4], bits[5] = "127.0.0.1", str(port)
            line, kept = " ".join(bits), True
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"
