"""What the app's DRF views share."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response

from django_rtcstream.signaling.messages import UNREADABLE_BODY, body_refused


class RefusesUnreadableBodies:
    """Answer a body Django will not read (over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, too many
    fields) with the app's failure body: 413 or 400.

    DRF lets these exceptions through to Django, which answers a bare 400 page and logs
    a traceback. They come from ``request.data`` and also from DRF's CSRF check for
    session-authenticated users, which reads ``request.POST`` before the handler runs.
    """

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, UNREADABLE_BODY):
            refusal = body_refused(exc)
            return Response(refusal.body(), status=refusal.status)
        return super().handle_exception(exc)  # type: ignore[misc]
