"""``manage.py rtcstream_sessions``: list, purge and reap ``StreamSession`` rows.

manage.py rtcstream_sessions                     # live sessions
manage.py rtcstream_sessions --all               # finished ones too
manage.py rtcstream_sessions --purge [--older-than DAYS]
manage.py rtcstream_sessions --reap              # fail sessions of dead workers
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from django_rtcstream.admin import humanize_duration, session_age
from django_rtcstream.conf import rtc_settings
from django_rtcstream.models import ACTIVE_STATES, StreamSession
from django_rtcstream.sessions import records

COLUMNS = ["stream", "webrtc_id", "state", "worker", "age"]


class Command(BaseCommand):
    help = "List live stream sessions; --all, --purge old finished ones, or --reap dead workers'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="Include finished sessions.")
        parser.add_argument(
            "--purge",
            action="store_true",
            help="Delete finished sessions older than --older-than days.",
        )
        parser.add_argument(
            "--older-than",
            type=int,
            metavar="DAYS",
            default=None,
            help="With --purge: age in days (default: SESSION_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--reap",
            action="store_true",
            help="Mark live sessions without a heartbeat for SESSION_LEASE "
            "seconds as failed, and print their ids.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = [f"--{name}" for name in ("all", "purge", "reap") if options[name]]
        if len(chosen) > 1:
            raise CommandError(f"{' and '.join(chosen)} cannot be combined; choose one.")
        if options["older_than"] is not None and not options["purge"]:
            raise CommandError("--older-than only applies to --purge.")
        if options["purge"]:
            self.purge(options["older_than"])
        elif options["reap"]:
            self.reap()
        else:
            self.show(include_finished=options["all"])

    def show(self, *, include_finished: bool) -> None:
        sessions = StreamSession.objects.order_by("stream", "-created_at")
        if not include_finished:
            sessions = sessions.filter(state__in=ACTIVE_STATES)
        now = timezone.now()
        rows = [
            [
                s.stream,
                s.webrtc_id,
                s.state,
                s.worker or "-",
                humanize_duration(session_age(s, now)),
            ]
            for s in sessions
        ]
        if not rows:
            self.stdout.write("No sessions." if include_finished else "No live sessions.")
            return
        widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )

    def purge(self, older_than: int | None) -> None:
        days = rtc_settings.SESSION_RETENTION_DAYS if older_than is None else older_than
        if days < 0:
            raise CommandError(f"--older-than must be 0 or more days, not {days}.")
        cutoff = timezone.now() - timedelta(days=days)
        # A finished row without closed_at (never admitted fully) ages from its creation.
        old = Q(closed_at__lt=cutoff) | Q(closed_at__isnull=True, created_at__lt=cutoff)
        deleted, _ = StreamSession.objects.exclude(state__in=ACTIVE_STATES).filter(old).delete()
        self.stdout.write(f"Deleted {deleted} finished session(s) older than {days} day(s).")

    def reap(self) -> None:
        ids = records._reap(rtc_settings.SESSION_LEASE)
        for webrtc_id in ids:
            self.stdout.write(webrtc_id)
        self.stdout.write(f"Reaped {len(ids)} session(s) of dead workers.")
