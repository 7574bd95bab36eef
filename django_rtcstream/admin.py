"""The admin for ``StreamSession`` rows: live and finished sessions, read-only.

Staff see every session with its state, age, worker and inputs, filter live from
finished ones, and terminate live sessions on whichever worker holds them (the
action goes through the control bus, like the sessions API). Rows are never
added or edited here; only finished sessions may be deleted.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from django_rtcstream.charts import line_chart
from django_rtcstream.conf import rtc_settings
from django_rtcstream.exceptions import BrokerUnavailable, UnknownSession
from django_rtcstream.models import ACTIVE_STATES, StreamSession
from django_rtcstream.sessions import bus

TERMINATE_REASON = "terminated_by_admin"
INPUTS_PREVIEW = 60


def session_age(session: StreamSession, now: datetime | None = None) -> timedelta:
    """Time from creation to close, or to ``now`` for a session still open."""
    end = session.closed_at or now or timezone.now()
    return max(end - session.created_at, timedelta(0))


def humanize_duration(delta: timedelta) -> str:
    """``45s``, ``3m 12s``, ``2h 05m``, ``3d 4h``: two units at most."""
    seconds = int(delta.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


class LiveFilter(admin.SimpleListFilter):
    """Live sessions (new, connecting, connected) or finished ones (closed, failed)."""

    title = _("live / finished")
    parameter_name = "live"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Live")), ("no", _("Finished"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[StreamSession]
    ) -> QuerySet[StreamSession]:
        if self.value() == "yes":
            return queryset.filter(state__in=ACTIVE_STATES)
        if self.value() == "no":
            return queryset.exclude(state__in=ACTIVE_STATES)
        return queryset


@admin.register(StreamSession)
class StreamSessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only sessions with a terminate action; ``token_hash`` is never shown."""

    list_display = [
        "webrtc_id",
        "stream",
        "channel",
        "state",
        "user",
        "worker",
        "age",
        "inputs_preview",
        "frames_in",
        "frames_out",
        "rtt",
        "bitrate",
        "loss",
        "close_reason",
    ]
    list_filter = ["stream", "state", "channel", LiveFilter]
    list_select_related = ["user"]
    search_fields = ["webrtc_id", "stream", "worker", "call_sid"]
    date_hierarchy = "created_at"
    actions = ["terminate_sessions", "delete_selected"]
    # Every field shown is read-only; token_hash is in none of them on purpose.
    fieldsets = [
        (None, {"fields": ["webrtc_id", "stream", "channel", "state", "close_reason"]}),
        (_("Where"), {"fields": ["user", "client_address", "worker", "call_sid"]}),
        (_("When"), {"fields": ["created_at", "connected_at", "closed_at", "heartbeat_at", "age"]}),
        (
            _("Media"),
            {
                "fields": [
                    "inputs",
                    "frames_in",
                    "frames_out",
                    "messages_out",
                    "stuck_calls",
                    "turns",
                    "interruptions",
                ]
            },
        ),
        (
            _("Network and media"),
            {"fields": ["stats_charts", "stats_latest", "stats_summary_table"]},
        ),
    ]
    # The live list reloads itself (static/django_rtcstream/admin-live.js) while no row
    # is selected: records change at each heartbeat.
    change_list_template = "admin/django_rtcstream/streamsession/change_list.html"
    readonly_fields = [field for _title, options in fieldsets for field in options["fields"]]

    @admin.display(description=_("age"))
    def age(self, session: StreamSession) -> str:
        return humanize_duration(session_age(session))

    @admin.display(description=_("inputs"))
    def inputs_preview(self, session: StreamSession) -> str:
        text = json.dumps(session.inputs, default=str)
        if len(text) <= INPUTS_PREVIEW:
            return text
        return text[: INPUTS_PREVIEW - 1] + "…"

    # -- stats (sessions/stats.py) ------------------------------------------------------

    @admin.display(description=_("RTT"))
    def rtt(self, session: StreamSession) -> str:
        return _figure(session.stats, "rtt_ms", "ms")

    @admin.display(description=_("kbit/s in / out"))
    def bitrate(self, session: StreamSession) -> str:
        stats = session.stats or {}
        if stats.get("bitrate_in_kbps") is None and stats.get("bitrate_out_kbps") is None:
            return "–"
        return f"{_number(stats.get('bitrate_in_kbps'))} / {_number(stats.get('bitrate_out_kbps'))}"

    @admin.display(description=_("loss in / out"))
    def loss(self, session: StreamSession) -> str:
        stats = session.stats or {}
        if stats.get("loss_in") is None and stats.get("loss_out") is None:
            return "–"
        return f"{_percent(stats.get('loss_in'))} / {_percent(stats.get('loss_out'))}"

    @admin.display(description=_("history"))
    def stats_charts(self, session: StreamSession) -> SafeString | str:
        history = session.stats_history or {}
        if not history.get("t"):
            return gettext("No samples yet (STATS_INTERVAL seconds after the session connects).")
        return format_html(
            '<div class="rtc-charts">{}{}{}</div>',
            line_chart("RTT", "ms", [("rtt", history.get("rtt_ms", []))]),
            line_chart(
                "Bitrate",
                "kbit/s",
                [
                    ("in", history.get("bitrate_in_kbps", [])),
                    ("out", history.get("bitrate_out_kbps", [])),
                ],
            ),
            line_chart(
                "Loss",
                "%",
                [
                    ("in", [_as_percent(v) for v in history.get("loss_in", [])]),
                    ("out", [_as_percent(v) for v in history.get("loss_out", [])]),
                ],
            ),
        )

    @admin.display(description=_("latest sample"))
    def stats_latest(self, session: StreamSession) -> SafeString | str:
        stats = {k: v for k, v in (session.stats or {}).items() if k != "t"}
        if not stats:
            return "–"
        return _table((name, "–" if value is None else value) for name, value in stats.items())

    @admin.display(description=_("summary (median / worst)"))
    def stats_summary_table(self, session: StreamSession) -> SafeString | str:
        summary = dict(session.stats_summary or {})
        if not summary:
            return gettext("Written when the session closes.")
        samples = summary.pop("samples", 0)
        rows = [("samples", samples)]
        for name, figure in summary.items():
            if isinstance(figure, dict) and figure.get("median") is not None:
                rows.append((name, f"{_number(figure['median'])} / {_number(figure['worst'])}"))
        return _table(rows)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list of live sessions (``?live=yes``) reloads itself every heartbeat."""
        context = dict(extra_context or {})
        if request.GET.get(LiveFilter.parameter_name) == "yes":
            context["rtc_refresh_seconds"] = max(2, round(rtc_settings.HEARTBEAT_INTERVAL))
        return super().changelist_view(request, extra_context=context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # False makes the change view a read-only view (view permission suffices).
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_live:
            return False
        return super().has_delete_permission(request, obj)

    def has_terminate_permission(self, request: HttpRequest) -> bool:
        """Terminating is changing a session: it needs the model's change permission."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description=_("Terminate selected sessions"), permissions=["terminate"])
    def terminate_sessions(self, request: HttpRequest, queryset: QuerySet[StreamSession]) -> None:
        """Close each selected live session on whichever worker holds it."""
        terminated = finished = unreachable = 0
        for session in queryset:
            if not session.is_live:
                finished += 1
                continue
            try:
                async_to_sync(bus.send_close)(session.stream, session.webrtc_id, TERMINATE_REASON)
            except UnknownSession:  # it ended since the page was drawn
                finished += 1
            except BrokerUnavailable:  # its worker cannot be reached through the channel layer
                unreachable += 1
            else:
                terminated += 1
        if unreachable:
            self.message_user(
                request,
                _(
                    "%(count)d sessions could not be terminated: the channel layer (the message "
                    "broker) cannot be reached. Try again in a few seconds."
                )
                % {"count": unreachable},
                messages.ERROR,
            )
        self.message_user(
            request,
            _("Terminated: %(terminated)d; already finished: %(finished)d.")
            % {"terminated": terminated, "finished": finished},
            messages.SUCCESS if terminated else messages.WARNING,
        )

    @admin.action(description=_("Delete selected finished sessions"), permissions=["delete"])
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[StreamSession]
    ) -> HttpResponse | None:
        """Django's bulk delete (same name, so its confirmation page posts back here),
        restricted to finished sessions: a live session's row is its worker's."""
        live = queryset.filter(state__in=ACTIVE_STATES).count()
        if live:
            self.message_user(
                request,
                _("%(count)d live session(s) skipped: terminate them first.") % {"count": live},
                messages.WARNING,
            )
        finished = queryset.exclude(state__in=ACTIVE_STATES)
        if not finished.exists():
            return None
        return django_delete_selected(self, request, finished)


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def _figure(stats: dict[str, Any] | None, name: str, unit: str) -> str:
    value = (stats or {}).get(name)
    return "–" if value is None else f"{_number(value)} {unit}"


def _as_percent(value: Any) -> float | None:
    return None if value is None else float(value) * 100


def _percent(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.1f}%"


def _table(rows: Any) -> SafeString:
    return format_html(
        '<table class="rtc-stats-table"><tbody>{}</tbody></table>',
        format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
    )
