"""``StreamSession``: the durable record of every streaming session.

The row is written when an offer is admitted, when the peer connects and when
the session ends, so any worker (and the admin) can see every session, and
``concurrency_limit`` is counted over all workers.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class SessionState(models.TextChoices):
    NEW = "new", _("new")
    CONNECTING = "connecting", _("connecting")
    CONNECTED = "connected", _("connected")
    CLOSED = "closed", _("closed")
    FAILED = "failed", _("failed")


ACTIVE_STATES = (SessionState.NEW, SessionState.CONNECTING, SessionState.CONNECTED)


class SessionChannel(models.TextChoices):
    WEBRTC = "webrtc", _("WebRTC")
    WEBSOCKET = "websocket", _("WebSocket")
    PHONE = "phone", _("telephone")


class StreamSession(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webrtc_id = models.CharField(_("session id"), max_length=64, db_index=True)
    stream = models.CharField(_("stream"), max_length=50, db_index=True)
    channel = models.CharField(
        _("channel"), max_length=16, choices=SessionChannel.choices, default=SessionChannel.WEBRTC
    )
    state = models.CharField(
        _("state"), max_length=16, choices=SessionState.choices, default=SessionState.NEW
    )
    worker = models.CharField(_("worker"), max_length=200, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rtc_sessions",
        verbose_name=_("user"),
    )
    client_address = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    inputs = models.JSONField(_("inputs"), default=list, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    connected_at = models.DateTimeField(_("connected"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    close_reason = models.CharField(_("close reason"), max_length=200, blank=True)
    # Columns added after 0001 have a database default too (migration 0006): during a
    # rolling upgrade the workers still on the older release insert rows without them.
    # Refreshed by the owning worker; a live row whose heartbeat is older than the
    # lease belongs to a dead worker and is reaped by any other.
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True, db_index=True)
    # sha256 of the secret handed to the client with the answer (never the secret).
    token_hash = models.CharField(max_length=64, blank=True, editable=False, db_default="")
    call_sid = models.CharField(_("call sid"), max_length=64, blank=True, db_default="")
    frames_in = models.PositiveBigIntegerField(_("frames in"), default=0)
    frames_out = models.PositiveBigIntegerField(_("frames out"), default=0)
    messages_out = models.PositiveBigIntegerField(_("messages out"), default=0)
    # Sync handler calls of this session that have run over 10 s, or still run after
    # it ended (each holds a thread: see sessions/pool.py), at the last heartbeat or close.
    stuck_calls = models.PositiveIntegerField(_("stuck handler calls"), default=0, db_default=0)
    # Turn-taking handlers (ReplyOnPause): utterances replied to, replies cut by speech.
    turns = models.PositiveIntegerField(_("turns"), default=0, db_default=0)
    interruptions = models.PositiveIntegerField(_("interruptions"), default=0, db_default=0)
    # Network and media figures (sessions/stats.py): the latest sample, written by the
    # heartbeat while live and at close; the last STATS_HISTORY samples of the charted
    # figures, column by column; the median and worst of each figure, at close.
    stats = models.JSONField(_("latest stats"), default=dict, db_default={}, blank=True)
    stats_history = models.JSONField(_("stats history"), default=dict, db_default={}, blank=True)
    stats_summary = models.JSONField(_("stats summary"), default=dict, db_default={}, blank=True)

    class Meta:
        verbose_name = _("stream session")
        verbose_name_plural = _("stream sessions")
        ordering = ["-created_at"]
        constraints = [
            # One live session per id: the database refuses a duplicate offer atomically,
            # whichever worker it reaches.
            models.UniqueConstraint(
                fields=["webrtc_id"],
                condition=Q(state__in=["new", "connecting", "connected"]),
                name="rtcstream_one_live_session_per_id",
            )
        ]
        indexes = [models.Index(fields=["stream", "state"], name="rtcstream_stream_state")]

    def __str__(self) -> str:
        return f"{self.stream}/{self.webrtc_id} ({self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in ACTIVE_STATES
