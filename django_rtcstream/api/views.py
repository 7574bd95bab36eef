"""What the app's DRF views share."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response

from django_rtcstream.exceptions import DatabaseUnavailable
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


class AnswersDatabaseOutages:
    """Answer a database that cannot be reached with 503 ``database_unavailable`` and
    ``Retry-After``, as the offer URL does, instead of a 500 and a traceback per request."""

    def handle_exception(self, exc: Exception) -> Any:
        from django_rtcstream.sessions import records
        from django_rtcstream.signaling.http import retry_headers

        if isinstance(exc, records.DATABASE_ERRORS):
            refusal = DatabaseUnavailable()
            return Response(refusal.body(), status=refusal.status, headers=retry_headers(refusal))
        return super().handle_exception(exc)  # type: ignore[misc]
