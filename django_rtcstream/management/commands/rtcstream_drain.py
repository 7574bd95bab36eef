"""``manage.py rtcstream_drain WORKER``: drain one worker, as SIGTERM would, without stopping it.

manage.py rtcstream_drain web-1                 # drain (DRAIN_TIMEOUT of the worker)
manage.py rtcstream_drain web-1 --timeout 120   # with this grace instead
manage.py rtcstream_drain web-1 --wait          # and wait until its sessions are gone
manage.py rtcstream_drain web-1 --resume        # take sessions again

The request goes over the channel layer to the worker named ``WORKER`` (its
``RTCSTREAM["WORKER_NAME"]``, by default ``host:pid``, as in the session records
and the admin), so it needs the channel layer the workers share (channels-redis).
The worker answers within seconds or the command fails, naming the workers that
hold live sessions.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_rtcstream.models import ACTIVE_STATES, StreamSession

ANSWER_SECONDS = 5.0


class Command(BaseCommand):
    help = (
        "Drain a worker: it takes no new sessions and closes its live ones as "
        "server_shutdown after its drain timeout (or --resume it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "worker", help="The worker's name (RTCSTREAM['WORKER_NAME'], host:pid)."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Seconds its live sessions get (default: the worker's DRAIN_TIMEOUT).",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Wait until the worker has no live session left.",
        )
        parser.add_argument(
            "--resume", action="store_true", help="Take new sessions again (undo a drain)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from channels.layers import InMemoryChannelLayer

        from django_rtcstream.sessions import bus

        worker = options["worker"]
        if options["resume"] and (options["wait"] or options["timeout"] is not None):
            raise CommandError("--resume cannot be combined with --wait or --timeout.")
        if options["timeout"] is not None and options["timeout"] < 0:
            raise CommandError("--timeout must be 0 or more seconds.")
        if isinstance(bus.layer(), InMemoryChannelLayer):
            raise CommandError(
                "The channel layer is in-memory, so this command cannot reach any worker: "
                "configure the channel layer the workers share (channels-redis)."
            )
        if options["resume"]:
            request: dict[str, Any] = {"type": "rtc.resume"}
        else:
            request = {"type": "rtc.drain", "timeout": options["timeout"]}
        reply = async_to_sync(self.ask)(worker, request)
        if reply is None:
            raise CommandError(
                f"No worker named {worker!r} answered within {ANSWER_SECONDS:g} s. "
                f"Workers with live sessions: {', '.join(self.live_workers()) or 'none'}."
            )
        if options["resume"]:
            self.stdout.write(
                f"Worker {worker} takes sessions again."
                if reply.get("resumed")
                else f"Worker {worker} was not draining."
            )
            return
        seconds = reply.get("seconds")
        self.stdout.write(
            f"Worker {worker} drains: {reply.get('sessions', 0)} live session(s); the rest "
            f"close as server_shutdown in {seconds or 0:.0f} s at the latest."
        )
        if options["wait"]:
            self.wait_drained(worker, (seconds or 0) + 15)

    async def ask(self, worker: str, request: dict[str, Any]) -> dict[str, Any] | None:
        from django_rtcstream.sessions import bus, drain

        layer = bus.layer()
        reply_channel = await layer.new_channel()
        await layer.send(drain.worker_channel(worker), {**request, "reply": reply_channel})
        try:
            return await asyncio.wait_for(layer.receive(reply_channel), ANSWER_SECONDS)
        except TimeoutError:
            return None

    def live_workers(self) -> list[str]:
        return sorted(
            set(
                StreamSession.objects.filter(state__in=ACTIVE_STATES)
                .exclude(worker="")
                .values_list("worker", flat=True)
            )
        )

    def wait_drained(self, worker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        live = StreamSession.objects.filter(worker=worker, state__in=ACTIVE_STATES)
        while live.exists():
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Worker {worker} still has live sessions after {timeout:.0f} s."
                )
            time.sleep(0.5)
        self.stdout.write(f"Worker {worker} has no live session left.")
